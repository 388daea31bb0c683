//! Tokenizer, chat template and stop tokens of an MLX-format checkpoint.
//!
//! `tokenizer.json` goes through the `tokenizers` crate; the chat template of
//! `tokenizer_config.json` (or `chat_template.jinja`) is rendered with minijinja the way
//! transformers' `apply_chat_template` does (trim_blocks, lstrip_blocks, Python string methods,
//! `raise_exception`), and the prompt is encoded without adding special tokens, because the
//! template writes them. Without a template, the family's built-in one (go-mlx §5.6) is used.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value, context};
use serde_json::Value as Json;
use tokenizers::Tokenizer;

use super::config::Family;
use crate::backend::Message;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

pub struct Chat {
    tokenizer: Tokenizer,
    template: Option<String>,
    family: Family,
    /// Special-token strings the template may use (`bos_token`, `eos_token`, …).
    specials: Vec<(String, String)>,
    stop: BTreeSet<u32>,
    /// "tokenizer_config.json" or "gemma (built in)", for the model info line.
    pub template_name: String,
}

fn read_json(path: &Path) -> Result<Option<Json>, ChatError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ChatError::File { file: path.display().to_string(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ChatError::File { file: path.display().to_string(), reason: e.to_string() }),
    }
}

/// `"<eos>"` or `{"content": "<eos>", …}` as tokenizer_config.json writes special tokens.
fn token_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

impl Chat {
    pub fn load(dir: &Path, family: Family, config_eos: &[u32]) -> Result<Self, ChatError> {
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| ChatError::File { file: tok_path.display().to_string(), reason: e.to_string() })?;
        let cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
        let mut specials = Vec::new();
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let Some(t) = cfg.get(key).and_then(token_text) {
                specials.push((key.to_owned(), t));
            }
        }
        let jinja_file = dir.join("chat_template.jinja");
        let (template, template_name) = if let Ok(t) = std::fs::read_to_string(&jinja_file) {
            (Some(t), "chat_template.jinja".to_owned())
        } else {
            match cfg.get("chat_template") {
                Some(Json::String(t)) => (Some(t.clone()), "tokenizer_config.json".to_owned()),
                // A list of named templates: the default one.
                Some(Json::Array(list)) => {
                    let t = list
                        .iter()
                        .find(|e| e.get("name").and_then(Json::as_str) == Some("default"))
                        .and_then(|e| e.get("template").and_then(Json::as_str));
                    (t.map(str::to_owned), "tokenizer_config.json".to_owned())
                }
                _ => (None, format!("{} (built in)", family.name())),
            }
        };
        let mut stop: BTreeSet<u32> = config_eos.iter().copied().collect();
        let eos = specials.iter().find(|(k, _)| k == "eos_token").map(|(_, v)| v.clone());
        let family_ends: &[&str] = match family {
            // go-mlx stops Gemma on <end_of_turn> only; a raw <eos> ends it too here.
            Family::Gemma3 => &["<end_of_turn>", "<eos>"],
            Family::Qwen2 | Family::Qwen3 => &["<|im_end|>", "<|endoftext|>"],
            Family::Llama => &["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"],
        };
        for t in eos.iter().map(String::as_str).chain(family_ends.iter().copied()) {
            if let Some(id) = tokenizer.token_to_id(t) {
                stop.insert(id);
            }
        }
        Ok(Self { tokenizer, template, family, specials, stop, template_name })
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }

    /// The prompt text for `messages`, ending where the assistant's answer starts.
    pub fn render(&self, messages: &[Message]) -> Result<String, ChatError> {
        match &self.template {
            Some(t) => self.render_jinja(t, messages),
            None => Ok(self.render_builtin(messages)),
        }
    }

    fn render_jinja(&self, template: &str, messages: &[Message]) -> Result<String, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| -> String { String::new() });
        env.add_template("chat", template).map_err(|e| ChatError::Template(e.to_string()))?;
        let tmpl = env.get_template("chat").map_err(|e| ChatError::Template(e.to_string()))?;
        let msgs: Vec<Value> =
            messages.iter().map(|m| context! { role => m.role.clone(), content => m.content.clone() }).collect();
        let mut ctx: Vec<(String, Value)> =
            self.specials.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
        ctx.push(("messages".into(), Value::from(msgs)));
        ctx.push(("add_generation_prompt".into(), Value::from(true)));
        tmpl.render(Value::from_iter(ctx)).map_err(|e| ChatError::Template(e.to_string()))
    }

    fn special(&self, key: &str) -> &str {
        self.specials.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }

    /// go-mlx's `formatChat` per family (§5.6).
    fn render_builtin(&self, messages: &[Message]) -> String {
        let mut out = String::new();
        match self.family {
            Family::Gemma3 => {
                // BOS comes from the tokenizer in go-mlx; here the prompt is encoded without
                // special tokens, so it is written out.
                out.push_str(if self.special("bos_token").is_empty() { "<bos>" } else { self.special("bos_token") });
                for m in messages {
                    let role = match m.role.as_str() {
                        "assistant" | "model" => "model",
                        // A system message is its own user turn, as go-mlx renders it.
                        _ => "user",
                    };
                    out.push_str(&format!("<start_of_turn>{role}\n{}<end_of_turn>\n", m.content));
                }
                out.push_str("<start_of_turn>model\n");
            }
            Family::Qwen2 | Family::Qwen3 => {
                for m in messages {
                    out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            Family::Llama => {
                out.push_str("<|begin_of_text|>");
                for m in messages {
                    out.push_str(&format!("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", m.role, m.content));
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
        }
        out
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ChatError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ChatError::Tokenizer(e.to_string()))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, ChatError> {
        self.tokenizer.decode(ids, true).map_err(|e| ChatError::Tokenizer(e.to_string()))
    }
}

/// Turns generated ids into text pieces as they come: decodes a short window and emits what
/// it adds, holding back while the tail is an incomplete character (U+FFFD).
#[derive(Default)]
pub struct Detokenizer {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    pub fn push(&mut self, chat: &Chat, id: u32) -> Result<String, ChatError> {
        self.ids.push(id);
        let before = chat.decode(&self.ids[self.prefix..self.read])?;
        let now = chat.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.is_char_boundary(before.len()) {
            self.prefix = self.read;
            self.read = self.ids.len();
            return Ok(now[before.len()..].to_owned());
        }
        Ok(String::new())
    }

    /// Whatever is still held back, at the end of the candidate.
    pub fn finish(&mut self, chat: &Chat) -> Result<String, ChatError> {
        let before = chat.decode(&self.ids[self.prefix..self.read])?;
        let now = chat.decode(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(if now.len() > before.len() && now.is_char_boundary(before.len()) {
            now[before.len()..].to_owned()
        } else {
            String::new()
        })
    }
}

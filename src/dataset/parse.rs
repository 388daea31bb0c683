//! One JSONL line to one [`Item`], or a [`LineError`] saying what is wrong with it. Pure.
//!
//! The shapes recognised, by their keys:
//!
//! - `{"messages": [...]}`: a lesson line (`[user, assistant]`, sandwiched or not, or LEM's older
//!   `[system, user, assistant]`) or any SFT chat. The last assistant turn is the candidate, the
//!   user turn before it its prompt; earlier exchanges are kept as context.
//! - `{"prompt", "completion"}`: one candidate. Either may also be a list of messages (TRL's
//!   conversational form).
//! - `{"prompt", "chosen", "rejected"}`: two candidates of one prompt (DPO).

use serde_json::Value;

use crate::probes::kind_of;

/// Which shape a line had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `[user, assistant]`.
    Lesson,
    /// `[system, user, assistant]` (LEM before the sandwich).
    LessonPlain,
    /// Any other `messages` list.
    Chat,
    PromptCompletion,
    Dpo,
}

impl Shape {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Lesson => "lesson",
            Shape::LessonPlain => "lesson_plain",
            Shape::Chat => "chat",
            Shape::PromptCompletion => "prompt_completion",
            Shape::Dpo => "dpo",
        }
    }
}

/// What a candidate was in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Answer,
    Chosen,
    Rejected,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Answer => "answer",
            Role::Chosen => "chosen",
            Role::Rejected => "rejected",
        }
    }
}

/// An earlier exchange of a multi-turn chat.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub user: String,
    pub assistant: String,
}

/// One usable line.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// 1-based line number.
    pub line: usize,
    pub shape: Shape,
    pub id: Option<String>,
    pub domain: Option<String>,
    pub system: Option<String>,
    /// The user turn as the file has it (sandwiched, for a sandwich lesson).
    pub user: String,
    pub answers: Vec<(Role, String)>,
    pub earlier: Vec<Exchange>,
}

/// Why a line was skipped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub what: String,
}

fn bad(line: usize, what: impl Into<String>) -> LineError {
    LineError { line, what: what.into() }
}

/// Parses line `line` (1-based). `Ok(None)` for a blank line.
pub fn parse_line(line: usize, text: &str) -> Result<Option<Item>, LineError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(text).map_err(|e| bad(line, format!("not JSON: {e}")))?;
    let Value::Object(obj) = &v else {
        return Err(bad(line, format!("expected a JSON object, found {}", kind_of(&v))));
    };
    let opt_str = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let (id, domain) = (opt_str("id"), opt_str("domain"));
    let mut item = if let Some(m) = obj.get("messages") {
        from_messages(line, m)?
    } else if let Some(p) = obj.get("prompt") {
        let (system, user, earlier) = prompt_turns(line, "prompt", p)?;
        let answer = |k: &str| obj.get(k).map(|v| completion(line, k, v)).transpose();
        let (shape, answers) = match (answer("completion")?, answer("chosen")?, answer("rejected")?) {
            (Some(c), None, None) => (Shape::PromptCompletion, vec![(Role::Answer, c)]),
            (None, Some(c), Some(r)) => (Shape::Dpo, vec![(Role::Chosen, c), (Role::Rejected, r)]),
            (None, Some(_), None) => return Err(bad(line, "field `rejected` is missing (a DPO line needs both)")),
            (None, None, Some(_)) => return Err(bad(line, "field `chosen` is missing (a DPO line needs both)")),
            (None, None, None) => {
                return Err(bad(line, "a `prompt` without `completion` or `chosen`/`rejected`"));
            }
            _ => return Err(bad(line, "both `completion` and `chosen`/`rejected`: which one is the answer?")),
        };
        Item { line, shape, id: None, domain: None, system, user, answers, earlier }
    } else {
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        return Err(bad(
            line,
            format!(
                "expected `messages`, `prompt`+`completion` or `prompt`+`chosen`+`rejected`; found keys [{}]",
                keys.join(", ")
            ),
        ));
    };
    for (role, text) in &item.answers {
        if text.trim().is_empty() {
            return Err(bad(
                line,
                format!("the {} is empty", if *role == Role::Answer { "answer" } else { role.as_str() }),
            ));
        }
    }
    item.id = id;
    item.domain = domain;
    Ok(Some(item))
}

/// `(role, content)` of each message of a list, or which field is wrong.
fn turns(line: usize, field: &str, v: &Value) -> Result<Vec<(String, String)>, LineError> {
    let Value::Array(list) = v else {
        return Err(bad(line, format!("field `{field}`: expected a list of messages, found {}", kind_of(v))));
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let get = |k: &str| match m.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => {
                    Err(bad(line, format!("field `{field}[{i}].{k}`: expected a string, found {}", kind_of(other))))
                }
                None => Err(bad(line, format!("field `{field}[{i}].{k}` is missing"))),
            };
            Ok((get("role")?, get("content")?))
        })
        .collect()
}

/// A conversation taken apart: system turn, earlier exchanges, the last user turn, the answer.
type Split = (Option<String>, Vec<Exchange>, String, Option<String>);

/// Splits a conversation ending in an assistant turn into system, earlier exchanges, the last
/// user turn and the last answer.
fn split_chat(line: usize, field: &str, msgs: Vec<(String, String)>, want_answer: bool) -> Result<Split, LineError> {
    let mut system = None;
    let mut earlier = Vec::new();
    let mut user: Option<String> = None;
    let mut answer = None;
    for (i, (role, content)) in msgs.into_iter().enumerate() {
        match role.as_str() {
            "system" if i == 0 => system = Some(content),
            "user" => {
                if let (Some(u), Some(a)) = (user.take(), answer.take()) {
                    earlier.push(Exchange { user: u, assistant: a });
                } else if user.is_some() {
                    return Err(bad(line, format!("field `{field}[{i}]`: two user turns in a row")));
                }
                user = Some(content);
            }
            "assistant" => {
                if user.is_none() || answer.is_some() {
                    return Err(bad(
                        line,
                        format!("field `{field}[{i}]`: an assistant turn without a user turn before it"),
                    ));
                }
                answer = Some(content);
            }
            other => return Err(bad(line, format!("field `{field}[{i}].role`: unknown role {other:?}"))),
        }
    }
    let Some(user) = user else {
        return Err(bad(line, format!("field `{field}`: no user turn")));
    };
    if want_answer && answer.is_none() {
        return Err(bad(line, format!("field `{field}`: does not end with an assistant turn")));
    }
    Ok((system, earlier, user, answer))
}

fn from_messages(line: usize, v: &Value) -> Result<Item, LineError> {
    let msgs = turns(line, "messages", v)?;
    let roles: Vec<&str> = msgs.iter().map(|(r, _)| r.as_str()).collect();
    let shape = match roles.as_slice() {
        ["user", "assistant"] => Shape::Lesson,
        ["system", "user", "assistant"] => Shape::LessonPlain,
        _ => Shape::Chat,
    };
    let (system, earlier, user, answer) = split_chat(line, "messages", msgs, true)?;
    let answers = answer.map(|a| vec![(Role::Answer, a)]).unwrap_or_default();
    Ok(Item { line, shape, id: None, domain: None, system, user, answers, earlier })
}

fn prompt_turns(line: usize, field: &str, v: &Value) -> Result<(Option<String>, String, Vec<Exchange>), LineError> {
    match v {
        Value::String(s) => Ok((None, s.clone(), Vec::new())),
        Value::Array(_) => {
            let (system, earlier, user, answer) = split_chat(line, field, turns(line, field, v)?, false)?;
            if answer.is_some() {
                return Err(bad(line, format!("field `{field}`: ends with an assistant turn, not the user's")));
            }
            Ok((system, user, earlier))
        }
        other => Err(bad(
            line,
            format!("field `{field}`: expected a string or a list of messages, found {}", kind_of(other)),
        )),
    }
}

fn completion(line: usize, field: &str, v: &Value) -> Result<String, LineError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(_) => {
            let msgs = turns(line, field, v)?;
            match msgs.as_slice() {
                [(role, content)] if role == "assistant" => Ok(content.clone()),
                _ => Err(bad(line, format!("field `{field}`: expected one assistant message"))),
            }
        }
        other => Err(bad(
            line,
            format!("field `{field}`: expected a string or a list of messages, found {}", kind_of(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Item {
        match parse_line(7, s) {
            Ok(Some(i)) => i,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match parse_line(7, s) {
            Err(e) => {
                assert_eq!(e.line, 7);
                e.what
            }
            other => panic!("{s}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn every_shape_parses() {
        let l = ok(r#"{"messages":[{"role":"user","content":"K\n\nQ"},{"role":"assistant","content":"A"}]}"#);
        assert_eq!(
            (l.shape, l.user.as_str(), l.answers.clone()),
            (Shape::Lesson, "K\n\nQ", vec![(Role::Answer, "A".into())])
        );
        let p = ok(
            r#"{"messages":[{"role":"system","content":"K"},{"role":"user","content":"Q"},{"role":"assistant","content":"A"}]}"#,
        );
        assert_eq!((p.shape, p.system.as_deref(), p.user.as_str()), (Shape::LessonPlain, Some("K"), "Q"));
        let c = ok(r#"{"messages":[{"role":"user","content":"q1"},{"role":"assistant","content":"a1"},
            {"role":"user","content":"q2"},{"role":"assistant","content":"a2"}]}"#
            .replace('\n', "")
            .as_str());
        assert_eq!(c.shape, Shape::Chat);
        assert_eq!(c.earlier, vec![Exchange { user: "q1".into(), assistant: "a1".into() }]);
        assert_eq!((c.user.as_str(), c.answers[0].1.as_str()), ("q2", "a2"));
        let pc = ok(r#"{"id":"P1","domain":"D","prompt":"Q","completion":"A"}"#);
        assert_eq!(
            (pc.shape, pc.id.as_deref(), pc.domain.as_deref()),
            (Shape::PromptCompletion, Some("P1"), Some("D"))
        );
        let d = ok(r#"{"prompt":"Q","chosen":"good","rejected":"bad"}"#);
        assert_eq!(d.answers, vec![(Role::Chosen, "good".into()), (Role::Rejected, "bad".into())]);
        let conv = ok(
            r#"{"prompt":[{"role":"user","content":"Q"}],"chosen":[{"role":"assistant","content":"g"}],"rejected":[{"role":"assistant","content":"b"}]}"#,
        );
        assert_eq!((conv.user.as_str(), conv.answers.len()), ("Q", 2));
        assert!(matches!(parse_line(1, "   "), Ok(None)));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(err("{not json").starts_with("not JSON: "));
        assert!(err("[1,2]").contains("expected a JSON object, found an array"));
        assert!(
            err(r#"{"text":"x","label":1}"#).contains("found keys [text, label]")
                || err(r#"{"text":"x","label":1}"#).contains("found keys [label, text]")
        );
        assert_eq!(err(r#"{"prompt":"Q","chosen":"g"}"#), "field `rejected` is missing (a DPO line needs both)");
        assert_eq!(
            err(r#"{"messages":[{"role":"user","content":"Q"},{"role":"assistant","content":3}]}"#),
            "field `messages[1].content`: expected a string, found a number"
        );
        assert_eq!(
            err(r#"{"messages":[{"role":"user","content":"Q"}]}"#),
            "field `messages`: does not end with an assistant turn"
        );
        assert_eq!(err(r#"{"prompt":"Q","completion":"  "}"#), "the answer is empty");
        assert!(err(r#"{"messages":[{"role":"tool","content":"x"}]}"#).contains("unknown role \"tool\""));
    }
}

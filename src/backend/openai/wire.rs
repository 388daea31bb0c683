//! The chat completions protocol: request bodies, stream chunks, error bodies.
//!
//! Servers differ in what they accept beyond OpenAI's fields, so the optional ones are
//! switchable per endpoint (see [`Body`]), and parsing is lenient about fields nobody needs.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::backend::{FinishReason, Message, Sampling};

/// What one HTTP request asks for.
#[derive(Clone, Debug)]
pub struct Body<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub sampling: Sampling,
    /// Seed of the first choice; choices of one request share it (the server varies them).
    pub seed: u64,
    pub n: u32,
    pub stop: &'a [String],
    /// `top_k`, `repetition_penalty`/`repeat_penalty`, `ignore_eos` and `stream_options`: accepted by vLLM,
    /// SGLang and llama.cpp's servers, rejected by strict OpenAI-style gateways.
    pub extras: bool,
}

/// Seeds are masked to 31 bits: vLLM rejects values past `i64::MAX`, and llama.cpp's servers
/// take a `u32` in which `0xFFFF_FFFF` means "random".
pub fn wire_seed(seed: u64) -> u64 {
    seed & 0x7FFF_FFFF
}

impl Body<'_> {
    pub fn to_json(&self) -> Value {
        let s = &self.sampling;
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), json!(self.messages));
        body.insert("stream".into(), json!(true));
        body.insert("max_tokens".into(), json!(s.max_tokens));
        body.insert("temperature".into(), json!(s.temperature));
        if s.top_p > 0.0 && s.top_p < 1.0 {
            body.insert("top_p".into(), json!(s.top_p));
        }
        body.insert("seed".into(), json!(wire_seed(self.seed)));
        if self.n > 1 {
            body.insert("n".into(), json!(self.n));
        }
        if !self.stop.is_empty() {
            body.insert("stop".into(), json!(self.stop));
        }
        if self.extras {
            if s.top_k > 0 {
                body.insert("top_k".into(), json!(s.top_k));
            }
            if s.min_p > 0.0 {
                // vLLM, SGLang, llama.cpp's servers and Ollama all name it so.
                body.insert("min_p".into(), json!(s.min_p));
            }
            if s.repeat_penalty > 1.0 {
                // vLLM and SGLang read the first name, llama.cpp's servers the second.
                body.insert("repetition_penalty".into(), json!(s.repeat_penalty));
                body.insert("repeat_penalty".into(), json!(s.repeat_penalty));
            }
            if s.ignore_eos {
                // vLLM and llama-server: run to max_tokens (benchmarks).
                body.insert("ignore_eos".into(), json!(true));
            }
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        Value::Object(body)
    }
}

/// One `data:` payload of the stream.
#[derive(Debug, Default, Deserialize)]
pub struct Chunk {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// vLLM and llama-server report mid-stream failures as a chunk with an `error` member.
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Option<Delta>,
    /// Legacy completions shape, which some servers still send on the chat route.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

impl Choice {
    pub fn content(&self) -> Option<&str> {
        self.delta.as_ref().and_then(|d| d.content.as_deref()).or(self.text.as_deref()).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Delta {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
}

/// How a choice ended, or `Err` with the server's word for a reason that is not an ending
/// (vLLM's `abort`).
pub fn finish_reason(s: &str) -> Result<FinishReason, String> {
    match s {
        "length" => Ok(FinishReason::Length),
        "abort" | "error" => Err(s.to_owned()),
        // `stop`, `eos`, `content_filter`, `tool_calls`: the model is done either way.
        _ => Ok(FinishReason::Stop),
    }
}

/// The human part of an error value: `{"message": …}`, FastAPI's `{"detail": …}`, or the JSON.
pub fn error_text(v: &Value) -> String {
    let inner = v.get("error").unwrap_or(v);
    if let Some(s) = inner.as_str() {
        return s.to_owned();
    }
    if let Some(m) = inner.get("message").and_then(Value::as_str) {
        return m.to_owned();
    }
    if let Some(d) = inner.get("detail") {
        return d.as_str().map_or_else(|| d.to_string(), str::to_owned);
    }
    inner.to_string()
}

/// True when an error event describes the request rather than the server (retrying it
/// elsewhere would fail the same way).
pub fn error_is_final(v: &Value) -> bool {
    let inner = v.get("error").unwrap_or(v);
    let code = inner.get("code").and_then(|c| c.as_u64().or_else(|| c.as_str().and_then(|s| s.parse().ok())));
    let kind = inner.get("type").and_then(Value::as_str).unwrap_or_default();
    code.is_some_and(|c| (400..500).contains(&c) && c != 408 && c != 429)
        || matches!(kind, "invalid_request_error" | "BadRequestError" | "NotFoundError")
}

/// The message of an HTTP error body: JSON when it is JSON, else its first 300 characters.
pub fn body_message(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => error_text(&v),
        Err(_) => {
            let t = body.trim();
            match t.char_indices().nth(300) {
                Some((i, _)) => format!("{}…", &t[..i]),
                None => t.to_owned(),
            }
        }
    }
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (IMF-fixdate, the only form servers
/// send today) taken relative to `now`. A date in the past means "now".
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs));
    }
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let mut parts = v.split_once(", ")?.1.split(' ');
    let day: i64 = parts.next()?.parse().ok()?;
    let mon = parts.next()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == mon)?;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next() != Some("GMT") {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, mo) = if month < 2 { (year - 1, month as i64 + 10) } else { (year, month as i64 - 2) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let at = (era * 146_097 + doe - 719_468) * 86_400 + h * 3600 + m * 60 + sec;
    let now = i64::try_from(now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    Some(std::time::Duration::from_secs(u64::try_from(at - now).unwrap_or(0)))
}

/// A 4xx that complains about `n`: the server cannot answer several choices in one request.
pub fn rejects_n(message: &str) -> bool {
    // A false positive costs one retry without `n`, after which the same error is final.
    let m = message.to_ascii_lowercase();
    m.contains("choice") || m.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|w| w == "n")
}

/// A 4xx that complains about one of the optional fields of [`Body::extras`] (a false
/// positive costs one retry without them).
pub fn rejects_extras(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "top_k",
        "min_p",
        "repetition_penalty",
        "repeat_penalty",
        "ignore_eos",
        "stream_options",
        "unrecognized",
        "extra",
        "not permitted",
    ]
    .iter()
    .any(|p| m.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_sampling_and_switchable_extras() {
        let msgs = [Message::user("hi")];
        // top_p stays at its default (off), which also keeps this literal valid as fields are added.
        let sampling = Sampling {
            max_tokens: 64,
            temperature: 0.8,
            top_k: 40,
            repeat_penalty: 1.1,
            seed: 1 << 40,
            ..Sampling::default()
        };
        let stop = vec!["</s>".to_owned()];
        let mut body =
            Body { model: "m", messages: &msgs, sampling, seed: (1 << 40) + 7, n: 3, stop: &stop, extras: true };
        let v = body.to_json();
        assert_eq!(v["stream"], true);
        assert_eq!(v["n"], 3);
        assert_eq!(v["seed"], 7);
        assert_eq!(v["top_k"], 40);
        assert!(v.get("top_p").is_none());
        assert_eq!(v["stop"][0], "</s>");
        assert_eq!(v["messages"][0]["role"], "user");
        assert!(v["repeat_penalty"].is_number() && v["repetition_penalty"].is_number());
        body.extras = false;
        body.n = 1;
        let v = body.to_json();
        for key in ["n", "top_k", "repeat_penalty", "repetition_penalty", "stream_options"] {
            assert!(v.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn chunks_and_errors_parse_leniently() {
        let c: Chunk = serde_json::from_str(
            r#"{"id":"x","choices":[{"index":1,"delta":{"role":"assistant","content":"Hé"},"finish_reason":null}]}"#,
        )
        .expect("chunk");
        assert_eq!((c.choices[0].index, c.choices[0].content()), (1, Some("Hé")));
        let c: Chunk = serde_json::from_str(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#)
            .expect("usage chunk");
        assert_eq!(c.usage.and_then(|u| u.completion_tokens), Some(9));
        let e: Value =
            serde_json::from_str(r#"{"error":{"message":"boom","type":"server_error","code":500}}"#).expect("json");
        assert_eq!(error_text(&e), "boom");
        assert!(!error_is_final(&e));
        let e: Value = serde_json::from_str(r#"{"error":{"message":"too long","code":400}}"#).expect("json");
        assert!(error_is_final(&e));
        assert!(body_message(r#"{"detail":[{"loc":["body","n"],"msg":"bad"}]}"#).contains("\"n\""));
        assert_eq!(body_message("<html>Bad Gateway</html>"), "<html>Bad Gateway</html>");
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        use std::time::{Duration, UNIX_EPOCH};
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 1.5 ", now), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Thu, 01 Mar 2024 00:00:00 GMT", UNIX_EPOCH + Duration::from_secs(1_709_251_200)),
            Some(Duration::ZERO)
        );
        for bad in ["-1", "soon", "Sun, 06 Nov 1994 08:49:37 PST", ""] {
            assert_eq!(retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn n_and_extras_complaints_are_recognised() {
        assert!(rejects_n("Only one completion choice is allowed"));
        assert!(rejects_n("n must be 1 when using greedy sampling"));
        assert!(!rejects_n("maximum context length exceeded"));
        assert!(rejects_extras("Unrecognized request argument supplied: top_k"));
        assert!(!rejects_extras("model not found"));
        assert_eq!(finish_reason("length"), Ok(FinishReason::Length));
        assert!(finish_reason("abort").is_err());
    }
}

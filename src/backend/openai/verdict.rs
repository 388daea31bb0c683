//! What a failed attempt means for its candidates and its endpoint: the retry policy as one
//! pure function.

use std::time::Duration;

use super::stream::AttemptError;
use super::wire;

/// The decision for the candidates a failed attempt leaves unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 429: rest the endpoint this long, then retry (counted).
    Rest(Duration),
    /// A 4xx about `n`: never send it `n` again; resend, not counted.
    WithoutN,
    /// A 4xx about an optional field: stop sending them there; resend, not counted.
    WithoutExtras,
    /// The request itself is wrong (auth, model name, prompt too long): every endpoint would
    /// say the same, so the candidates fail with the server's message.
    Fail,
    /// The server's fault: retry after a backoff (counted); `down` takes the endpoint out at
    /// once (it refused or dropped the connection) rather than after repeated failures.
    Retry { down: bool },
}

/// `several`: the request asked for more than one choice; `extras`: it carried the optional
/// fields.
pub fn verdict(err: &AttemptError, several: bool, extras: bool) -> Verdict {
    match err {
        AttemptError::Status { code: 429, retry_after, .. } => {
            Verdict::Rest(retry_after.unwrap_or(Duration::from_secs(1)))
        }
        AttemptError::Status { code, message, .. } if (400..500).contains(code) && *code != 408 => {
            if several && wire::rejects_n(message) {
                Verdict::WithoutN
            } else if extras && wire::rejects_extras(message) {
                Verdict::WithoutExtras
            } else {
                Verdict::Fail
            }
        }
        AttemptError::Server { fatal: true, .. } => Verdict::Fail,
        AttemptError::Connect(_) | AttemptError::Broken(_) => Verdict::Retry { down: true },
        AttemptError::NoResponse(_)
        | AttemptError::Status { .. }
        | AttemptError::Idle(_)
        | AttemptError::Protocol(_)
        | AttemptError::Server { .. }
        | AttemptError::Cancelled => Verdict::Retry { down: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> AttemptError {
        AttemptError::Status { code, retry_after: None, message: message.into() }
    }

    #[test]
    fn each_failure_has_its_verdict() {
        let secs = Duration::from_secs;
        let limited = AttemptError::Status { code: 429, retry_after: Some(secs(7)), message: String::new() };
        assert_eq!(verdict(&limited, false, true), Verdict::Rest(secs(7)));
        assert_eq!(verdict(&status(429, ""), false, true), Verdict::Rest(secs(1)));
        assert_eq!(verdict(&status(400, "Only one completion choice is allowed"), true, true), Verdict::WithoutN);
        assert_eq!(verdict(&status(400, "Only one completion choice is allowed"), false, false), Verdict::Fail);
        assert_eq!(verdict(&status(422, "extra fields not permitted: top_k"), false, true), Verdict::WithoutExtras);
        assert_eq!(verdict(&status(401, "bad key"), true, true), Verdict::Fail);
        assert_eq!(verdict(&status(408, "timeout"), false, true), Verdict::Retry { down: false });
        assert_eq!(verdict(&status(503, "overloaded"), false, true), Verdict::Retry { down: false });
        assert_eq!(verdict(&AttemptError::Connect("refused".into()), false, true), Verdict::Retry { down: true });
        assert_eq!(verdict(&AttemptError::Broken("eof".into()), false, true), Verdict::Retry { down: true });
        assert_eq!(verdict(&AttemptError::Idle(secs(1)), false, true), Verdict::Retry { down: false });
        let fatal = AttemptError::Server { message: "too long".into(), fatal: true };
        assert_eq!(verdict(&fatal, false, true), Verdict::Fail);
    }
}

//! lem-tui's `api` section of ai.yaml: the OpenAI-compatible endpoints for `backend: api`.
//!
//! Strict (unknown keys are errors) and checked inside the deserializer, so a bad value is
//! reported with its line and column. The API key is never in the file: `api_key_env` names the
//! environment variable that holds it.
//!
//! ```yaml
//! api:
//!   endpoints:
//!     - http://gpu1:8000/v1
//!     - url: http://gpu2:8000
//!       concurrency: 16
//!   model: Qwen/Qwen2.5-7B-Instruct
//!   api_key_env: VLLM_API_KEY
//!   concurrency: 8
//!   timeouts: { connect: 10, first_byte: 300, idle: 60 }
//!   endpoint_wait: 90   # seconds with no endpoint up before the run stops (exit 75)
//! ```

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default, deserialize_with = "endpoints")]
    pub endpoints: Vec<ApiEndpoint>,
    /// The `model` field of each request; absent: the first model the server lists.
    #[serde(default, deserialize_with = "opt_model")]
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (sent as a bearer token).
    #[serde(default, deserialize_with = "opt_env_name")]
    pub api_key_env: Option<String>,
    /// Requests in flight per endpoint (1-1024), unless the endpoint sets its own.
    #[serde(default, deserialize_with = "opt_concurrency")]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub timeouts: ApiTimeouts,
    /// Failed attempts after which a candidate fails (1-20).
    #[serde(default, deserialize_with = "opt_attempts")]
    pub max_attempts: Option<u32>,
    /// Stop sequences sent with every request.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Ask for a probe's candidates in one request (`n`) where the server honours it.
    #[serde(default)]
    pub batch_n: Option<bool>,
    /// Seconds to wait for an endpoint to come back while none is up before the run stops.
    #[serde(default, deserialize_with = "opt_seconds")]
    pub endpoint_wait: Option<f64>,
}

/// One endpoint: a URL, or `{url, concurrency}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiEndpoint {
    pub url: String,
    pub concurrency: Option<u32>,
}

/// Seconds; absent keys keep the backend's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTimeouts {
    #[serde(default, deserialize_with = "opt_seconds")]
    pub connect: Option<f64>,
    #[serde(default, deserialize_with = "opt_seconds")]
    pub first_byte: Option<f64>,
    #[serde(default, deserialize_with = "opt_seconds")]
    pub idle: Option<f64>,
}

/// Checks an endpoint URL: http(s) with a host, no query or fragment.
pub fn check_endpoint_url(v: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(v.trim())
        .map_err(|e| format!("`{v}` is not a URL ({e}); write e.g. http://host:8000/v1"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{v}` must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{v}` must not have a query or fragment"));
    }
    Ok(())
}

/// Checks that `v` is an environment variable name, and says so without echoing it when it
/// looks like a pasted key.
pub fn check_env_name(v: &str) -> Result<(), String> {
    let mut cs = v.chars();
    let ok = cs.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && cs.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if ok {
        return Ok(());
    }
    Err(format!(
        "must name the environment variable that holds the key (e.g. OPENAI_API_KEY), not the key itself; \
         this {}-character value is not a variable name (keys are never stored in ai.yaml)",
        v.chars().count()
    ))
}

fn checked_str<'de, D: Deserializer<'de>>(d: D, check: fn(&str) -> Result<(), String>) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check(&s).map(|()| s).map_err(de::Error::custom)
}

fn opt_model<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s {
        Some(m) if m.trim().is_empty() => {
            Err(de::Error::custom("must not be empty (leave it out to use the server's first model)"))
        }
        other => Ok(other),
    }
}

fn opt_env_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| check_env_name(&s).map(|()| s).map_err(de::Error::custom)).transpose()
}

fn bounded<E: de::Error>(v: i128, lo: i128, hi: i128, what: &str) -> Result<u32, E> {
    if (lo..=hi).contains(&v) {
        u32::try_from(v).map_err(|_| E::custom(format!("{what} must be {lo}-{hi}, got {v}")))
    } else {
        Err(E::custom(format!("{what} must be {lo}-{hi}, got {v}")))
    }
}

struct Int(i128, i128, &'static str);

impl Visitor<'_> for Int {
    type Value = u32;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer {}-{}", self.0, self.1)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        bounded(i128::from(v), self.0, self.1, self.2)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        bounded(i128::from(v), self.0, self.1, self.2)
    }
}

fn opt_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    d.deserialize_u64(Int(1, 1024, "concurrency")).map(Some)
}

fn opt_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    d.deserialize_u64(Int(1, 20, "max_attempts")).map(Some)
}

fn opt_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(Some(v))
    } else {
        Err(de::Error::custom(format!("a timeout must be > 0 and at most 86400 seconds, got {v}")))
    }
}

impl<'de> Deserialize<'de> for ApiEndpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(deserialize_with = "url")]
            url: String,
            #[serde(default, deserialize_with = "opt_concurrency")]
            concurrency: Option<u32>,
        }
        fn url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            checked_str(d, check_endpoint_url)
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ApiEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a URL or {url, concurrency}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ApiEndpoint, E> {
                check_endpoint_url(v).map_err(E::custom)?;
                Ok(ApiEndpoint { url: v.to_owned(), concurrency: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ApiEndpoint, A::Error> {
                let f = Full::deserialize(MapAccessDeserializer::new(map))?;
                Ok(ApiEndpoint { url: f.url, concurrency: f.concurrency })
            }
        }
        d.deserialize_any(V)
    }
}

fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ApiEndpoint>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<ApiEndpoint>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of endpoint URLs")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(e) = seq.next_element::<ApiEndpoint>()? {
                out.push(e);
            }
            if out.is_empty() {
                return Err(de::Error::custom("must list at least one endpoint (or leave `endpoints` out)"));
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ApiConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn both_endpoint_forms_and_every_field() {
        let c = parse(
            "endpoints:\n  - http://a:8000/v1\n  - {url: 'http://b:8000', concurrency: 16}\nmodel: m\n\
             api_key_env: VLLM_API_KEY\nconcurrency: 8\ntimeouts: {connect: 2, first_byte: 30.5}\nmax_attempts: 3\n\
             stop: ['</s>']\nbatch_n: false\nendpoint_wait: 30\n",
        )
        .expect("valid");
        assert_eq!(c.endpoints[1], ApiEndpoint { url: "http://b:8000".into(), concurrency: Some(16) });
        assert_eq!((c.concurrency, c.max_attempts, c.batch_n), (Some(8), Some(3), Some(false)));
        assert_eq!((c.timeouts.first_byte, c.timeouts.idle), (Some(30.5), None));
        assert_eq!(c.api_key_env.as_deref(), Some("VLLM_API_KEY"));
        assert_eq!(c.endpoint_wait, Some(30.0));
    }

    #[test]
    fn ai_yaml_api_section_loads_strictly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ai.yaml");
        std::fs::write(&path, "backend: api\napi:\n  endpoints: [http://a:8000/v1]\n  api_key_env: KEY\n")
            .expect("write");
        let loaded = crate::config::load_yaml::<crate::config::AiConfig>(&path).expect("loads");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let api = loaded.config.api.expect("api section");
        assert_eq!(api.endpoints[0].url, "http://a:8000/v1");
        std::fs::write(&path, "backend: api\napi:\n  endpoints: [http://a:8000/v1]\n  modle: x\n").expect("write");
        let e = crate::config::load_yaml::<crate::config::AiConfig>(&path).expect_err("typo is an error").to_string();
        assert!(e.contains("ai.yaml") && e.contains("modle") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_with_a_location() {
        let e = parse("endpoints: [localhost:8000]").expect_err("no scheme");
        assert!(e.contains("http://") && e.contains("line 1"), "{e}");
        let e = parse("endpoints:\n  - url: http://a\n    concurency: 2\n").expect_err("typo");
        assert!(e.contains("concurency"), "{e}");
        assert!(parse("concurrency: 0").expect_err("zero").contains("1-1024"));
        assert!(parse("timeouts: {idle: -1}").is_err());
        assert!(parse("endpoints: []").is_err());
        assert!(parse("api_key: x").is_err(), "unknown key");
        let secret = "sk-abc123def456";
        let e = parse(&format!("api_key_env: {secret}")).expect_err("a key, not a name");
        assert!(e.contains("not the key itself") && !e.contains(secret), "{e}");
    }
}

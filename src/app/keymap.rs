//! Keys → [`Command`]s. The defaults can be overridden per command in
//! `<config dir>/keymap.yaml`, e.g. `accept: [a, enter]` or `quit: [q, ctrl-c]`; a listed
//! command's keys replace its defaults. A key bound to two commands is an error.

use std::collections::BTreeMap;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::{Action, Command};
use super::state::InputContext;

/// A key as written in the keymap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("{file}: {source}")]
    Parse { file: String, source: serde_yaml::Error },
    #[error("{file}: `{name}` is not a command (known: {known})")]
    UnknownCommand { file: String, name: String, known: String },
    #[error("{file}: command `{command}`: cannot read key `{key}` (try a, G, ctrl-c, enter, f1, pageup)")]
    BadKey { file: String, command: String, key: String },
    #[error("{file}: key `{key}` is bound to both `{a}` and `{b}`")]
    Conflict { file: String, key: String, a: &'static str, b: &'static str },
    #[error("reading {file}: {source}")]
    Io { file: String, source: std::io::Error },
}

impl Key {
    pub fn parse(s: &str) -> Option<Key> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s.trim();
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 1 && (lower.starts_with("ctrl-") || lower.starts_with("ctrl+")) {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.len() > 1 && (lower.starts_with("alt-") || lower.starts_with("alt+")) {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest.to_ascii_lowercase().as_str() {
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" | "shift-tab" => KeyCode::BackTab,
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" => KeyCode::PageDown,
                "space" => KeyCode::Char(' '),
                f if f.starts_with('f') => KeyCode::F(f[1..].parse().ok().filter(|n| (1..=24).contains(n))?),
                _ => return None,
            },
        };
        Some(Key { code, ctrl, alt })
    }

    pub fn of(ev: &KeyEvent) -> Key {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        let code = match ev.code {
            KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
            other => other,
        };
        Key { code, ctrl, alt: ev.modifiers.contains(KeyModifiers::ALT) }
    }

    /// How the help overlay shows the key.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Backspace => "Bksp".into(),
            KeyCode::Delete => "Del".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::F(n) => format!("F{n}"),
            _ => "?".into(),
        };
        match (self.ctrl, self.alt) {
            (true, _) => format!("C-{base}"),
            (false, true) => format!("M-{base}"),
            _ => base,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Keymap {
    bindings: BTreeMap<Command, Vec<Key>>,
}

fn defaults() -> BTreeMap<Command, Vec<&'static str>> {
    use Command as C;
    BTreeMap::from([
        (C::Up, vec!["up", "k"]),
        (C::Down, vec!["down", "j"]),
        (C::PageUp, vec!["pageup"]),
        (C::PageDown, vec!["pagedown", "space"]),
        (C::Top, vec!["home", "g"]),
        (C::Bottom, vec!["end", "G"]),
        (C::NextPane, vec!["tab"]),
        (C::PrevPane, vec!["backtab"]),
        (C::Open, vec!["enter"]),
        (C::Back, vec!["esc"]),
        (C::Accept, vec!["a"]),
        (C::Reject, vec!["x"]),
        (C::RejectWithReason, vec!["X"]),
        (C::More, vec!["r"]),
        (C::Skip, vec!["s"]),
        (C::Undo, vec!["u"]),
        (C::Pause, vec!["p"]),
        (C::Cancel, vec!["c"]),
        (C::Limits, vec!["l"]),
        (C::Mode, vec!["m"]),
        (C::Filter, vec!["/"]),
        (C::Tag, vec!["t"]),
        (C::Bulk, vec!["B"]),
        (C::Sort, vec![">"]),
        (C::SortReverse, vec!["<"]),
        (C::Compare, vec!["d"]),
        (C::Edit, vec!["e"]),
        (C::History, vec!["H"]),
        (C::Help, vec!["?", "f1"]),
        (C::Quit, vec!["q", "ctrl-c"]),
        (C::Confirm, vec!["y"]),
    ])
}

impl Default for Keymap {
    fn default() -> Self {
        let bindings =
            defaults().into_iter().map(|(c, keys)| (c, keys.into_iter().filter_map(Key::parse).collect())).collect();
        Self { bindings }
    }
}

impl Keymap {
    /// The defaults with `<dir>/keymap.yaml` applied, when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Self, KeymapError> {
        let Some(path) = dir.map(|d| d.join("keymap.yaml")).filter(|p| p.is_file()) else {
            return Ok(Self::default());
        };
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| KeymapError::Io { file: file.clone(), source })?;
        Self::from_yaml(&text, &file)
    }

    pub fn from_yaml(text: &str, file: &str) -> Result<Self, KeymapError> {
        let user: BTreeMap<String, OneOrMany> =
            serde_yaml::from_str(text).map_err(|source| KeymapError::Parse { file: file.into(), source })?;
        let mut map = Self::default();
        for (name, keys) in user {
            let Some(cmd) = Command::ALL.iter().copied().find(|c| c.name() == name) else {
                let known = Command::ALL.map(Command::name).join(", ");
                return Err(KeymapError::UnknownCommand { file: file.into(), name, known });
            };
            let parsed = keys
                .into_vec()
                .into_iter()
                .map(|k| {
                    Key::parse(&k).ok_or_else(|| KeymapError::BadKey {
                        file: file.into(),
                        command: name.clone(),
                        key: k,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            map.bindings.insert(cmd, parsed);
        }
        let mut seen: std::collections::HashMap<Key, Command> = std::collections::HashMap::new();
        for (cmd, keys) in &map.bindings {
            for k in keys {
                if let Some(other) = seen.insert(*k, *cmd) {
                    return Err(KeymapError::Conflict {
                        file: file.into(),
                        key: k.label(),
                        a: other.name(),
                        b: cmd.name(),
                    });
                }
            }
        }
        Ok(map)
    }

    pub fn keys(&self, cmd: Command) -> &[Key] {
        self.bindings.get(&cmd).map_or(&[], Vec::as_slice)
    }

    /// The first key of a command, for hints ("a accept").
    pub fn hint(&self, cmd: Command) -> String {
        self.keys(cmd).first().map_or_else(|| "-".into(), Key::label)
    }

    fn command(&self, key: Key) -> Option<Command> {
        self.bindings.iter().find(|(_, keys)| keys.contains(&key)).map(|(c, _)| *c)
    }

    /// What a key press means where the operator is. Text fields take printable keys as
    /// text; Esc, Enter, Tab and the arrows keep their meaning everywhere.
    pub fn resolve(&self, ctx: InputContext, ev: &KeyEvent) -> Option<Action> {
        let key = Key::of(ev);
        match ctx {
            InputContext::Text => match ev.code {
                KeyCode::Esc => Some(Action::Command(Command::Back)),
                KeyCode::Enter => Some(Action::Command(Command::Open)),
                KeyCode::Tab | KeyCode::Down => Some(Action::Command(Command::Down)),
                KeyCode::BackTab | KeyCode::Up => Some(Action::Command(Command::Up)),
                KeyCode::Backspace => Some(Action::Backspace),
                KeyCode::Char('c') if key.ctrl => Some(Action::Command(Command::Back)),
                KeyCode::Char(c) if !key.ctrl && !key.alt => Some(Action::Char(c)),
                _ => None,
            },
            InputContext::Edit => {
                use super::edit::EditKey as E;
                let k = match ev.code {
                    KeyCode::Esc => E::Cancel,
                    KeyCode::Char('s') if key.ctrl => E::Save,
                    KeyCode::Char('c') if key.ctrl => E::Cancel,
                    KeyCode::Enter => E::Newline,
                    KeyCode::Backspace => E::Backspace,
                    KeyCode::Delete => E::Delete,
                    KeyCode::Left => E::Left,
                    KeyCode::Right => E::Right,
                    KeyCode::Up => E::Up,
                    KeyCode::Down => E::Down,
                    KeyCode::Home => E::Home,
                    KeyCode::End => E::End,
                    KeyCode::Char(c) if !key.ctrl && !key.alt => E::Char(c),
                    _ => return None,
                };
                Some(Action::Edit(k))
            }
            InputContext::Confirm => match ev.code {
                KeyCode::Enter => Some(Action::Command(Command::Confirm)),
                KeyCode::Esc => Some(Action::Command(Command::Back)),
                KeyCode::Char('n' | 'N') => Some(Action::Command(Command::Back)),
                _ => match self.command(key) {
                    Some(Command::Confirm) => Some(Action::Command(Command::Confirm)),
                    Some(_) | None => Some(Action::Command(Command::Back)),
                },
            },
            InputContext::Normal => self.command(key).map(Action::Command),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_follow_the_issue() {
        let k = Keymap::default();
        let n = |c: char| k.resolve(InputContext::Normal, &press(KeyCode::Char(c), KeyModifiers::NONE));
        assert_eq!(n('a'), Some(Action::Command(Command::Accept)));
        assert_eq!(n('x'), Some(Action::Command(Command::Reject)));
        assert_eq!(n('j'), Some(Action::Command(Command::Down)));
        assert_eq!(n('?'), Some(Action::Command(Command::Help)));
        assert_eq!(n('G'), Some(Action::Command(Command::Bottom)));
        let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(k.resolve(InputContext::Normal, &ctrl_c), Some(Action::Command(Command::Quit)));
        assert_eq!(n('c'), Some(Action::Command(Command::Cancel)));
        for cmd in Command::ALL {
            assert!(!k.keys(cmd).is_empty(), "{} has no default key", cmd.name());
        }
    }

    #[test]
    fn text_fields_take_letters() {
        let k = Keymap::default();
        let a = press(KeyCode::Char('a'), KeyModifiers::NONE);
        assert_eq!(k.resolve(InputContext::Text, &a), Some(Action::Char('a')));
        let esc = press(KeyCode::Esc, KeyModifiers::NONE);
        assert_eq!(k.resolve(InputContext::Text, &esc), Some(Action::Command(Command::Back)));
        let y = press(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(k.resolve(InputContext::Confirm, &y), Some(Action::Command(Command::Confirm)));
        let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(k.resolve(InputContext::Confirm, &q), Some(Action::Command(Command::Back)));
    }

    #[test]
    fn user_file_overrides_and_is_checked() {
        let k = Keymap::from_yaml("accept: [enter, A]\nopen: o\n", "keymap.yaml").expect("valid");
        let enter = press(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(k.resolve(InputContext::Normal, &enter), Some(Action::Command(Command::Accept)));
        assert_eq!(k.hint(Command::Open), "o");
        let e = Keymap::from_yaml("accept: x\n", "km.yaml").expect_err("conflict").to_string();
        assert!(e.contains("km.yaml") && e.contains("`x`") && e.contains("reject"), "{e}");
        let e = Keymap::from_yaml("acept: a\n", "km.yaml").expect_err("unknown").to_string();
        assert!(e.contains("acept"), "{e}");
        let e = Keymap::from_yaml("accept: hyper-z\n", "km.yaml").expect_err("bad key").to_string();
        assert!(e.contains("hyper-z"), "{e}");
    }

    #[test]
    fn key_names_round_trip() {
        assert_eq!(Key::parse("ctrl-c").map(|k| k.label()), Some("C-c".into()));
        assert_eq!(Key::parse("f1").map(|k| k.code), Some(KeyCode::F(1)));
        assert_eq!(Key::parse("pagedown").map(|k| k.code), Some(KeyCode::PageDown));
        assert_eq!(Key::parse("f99"), None);
        assert_eq!(Key::parse(""), None);
    }
}

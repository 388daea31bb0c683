//! Semantic roles → styles. Draw code asks for a [`Role`], never for a colour.
//!
//! Bundled themes (`themes/*.yaml`) are embedded at build time. A user theme is a YAML file
//! in `<config dir>/themes/` (or any path given to `--theme`); it may name a bundled theme in
//! `inherits:` (default `dark`) and override only the roles it lists. `NO_COLOR` strips every
//! colour and keeps the modifiers, with reverse video for the roles that must stay visible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// What a piece of the screen means; the theme decides how it looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Base,
    Text,
    Dim,
    Border,
    BorderFocus,
    Title,
    TitleFocus,
    Selected,
    Best,
    Marker,
    Key,
    Info,
    Warn,
    Error,
    Queued,
    Generating,
    Review,
    Kept,
    Skipped,
    Failed,
    GatePass,
    GateFail,
    GaugeOk,
    GaugeWarn,
    GaugeCrit,
    GaugeEmpty,
    Sparkline,
    Popup,
    StatusBar,
    Mode,
    Paused,
    /// Words only the right-hand candidate of a comparison has.
    DiffAdded,
    /// Words only the left-hand candidate has.
    DiffRemoved,
}

/// Every role with its name in theme files.
pub const ROLES: &[(Role, &str)] = &[
    (Role::Base, "base"),
    (Role::Text, "text"),
    (Role::Dim, "dim"),
    (Role::Border, "border"),
    (Role::BorderFocus, "border_focus"),
    (Role::Title, "title"),
    (Role::TitleFocus, "title_focus"),
    (Role::Selected, "selected"),
    (Role::Best, "best"),
    (Role::Marker, "marker"),
    (Role::Key, "key"),
    (Role::Info, "info"),
    (Role::Warn, "warn"),
    (Role::Error, "error"),
    (Role::Queued, "queued"),
    (Role::Generating, "generating"),
    (Role::Review, "review"),
    (Role::Kept, "kept"),
    (Role::Skipped, "skipped"),
    (Role::Failed, "failed"),
    (Role::GatePass, "gate_pass"),
    (Role::GateFail, "gate_fail"),
    (Role::GaugeOk, "gauge_ok"),
    (Role::GaugeWarn, "gauge_warn"),
    (Role::GaugeCrit, "gauge_crit"),
    (Role::GaugeEmpty, "gauge_empty"),
    (Role::Sparkline, "sparkline"),
    (Role::Popup, "popup"),
    (Role::StatusBar, "status_bar"),
    (Role::Mode, "mode"),
    (Role::Paused, "paused"),
    (Role::DiffAdded, "diff_added"),
    (Role::DiffRemoved, "diff_removed"),
];

/// The themes built into the binary, by name.
pub const BUNDLED: &[(&str, &str)] = &[
    ("dark", include_str!("../themes/dark.yaml")),
    ("light", include_str!("../themes/light.yaml")),
    ("high-contrast", include_str!("../themes/high-contrast.yaml")),
];

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("{file}: {source}")]
    Parse { file: String, source: serde_yaml::Error },
    #[error("{file}: unknown role `{role}` (known: {known})")]
    UnknownRole { file: String, role: String, known: String },
    #[error("{file}: role `{role}`: {field} `{value}` is not a colour (a name, #rrggbb, 0-255 or reset)")]
    BadColour { file: String, role: String, field: &'static str, value: String },
    #[error("{file}: bundled theme lacks role `{role}`")]
    MissingRole { file: String, role: &'static str },
    #[error("{file}: inherits `{name}`, which is not a bundled theme ({known})")]
    BadParent { file: String, name: String, known: String },
    #[error("no theme `{name}`: not a file, not in {dir}, not bundled ({known})")]
    NotFound { name: String, dir: String, known: String },
    #[error("reading {file}: {source}")]
    Io { file: String, source: std::io::Error },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    dim: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    inherits: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, StyleSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: Vec<Style>,
}

fn known_roles() -> String {
    ROLES.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
}

fn known_themes() -> String {
    BUNDLED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn colour(file: &str, role: &str, field: &'static str, v: &str) -> Result<Color, ThemeError> {
    Color::from_str(v.trim()).map_err(|_| ThemeError::BadColour {
        file: file.into(),
        role: role.into(),
        field,
        value: v.into(),
    })
}

impl Theme {
    /// Looks a role up; every role has a style (bundled themes are complete).
    pub fn style(&self, role: Role) -> Style {
        let i = ROLES.iter().position(|(r, _)| *r == role).unwrap_or(0);
        self.styles.get(i).copied().unwrap_or_default()
    }

    /// The default theme. The bundled files are checked by a test, so this cannot fail in a
    /// released binary; a plain style is the fallback all the same.
    pub fn default_dark() -> Self {
        Self::bundled("dark").unwrap_or_else(|_| Self { name: "plain".into(), styles: vec![Style::new(); ROLES.len()] })
    }

    pub fn bundled(name: &str) -> Result<Self, ThemeError> {
        let (_, text) = BUNDLED.iter().find(|(n, _)| *n == name).ok_or_else(|| ThemeError::NotFound {
            name: name.into(),
            dir: "-".into(),
            known: known_themes(),
        })?;
        let file = format!("themes/{name}.yaml");
        let (t, set) = Self::parse(text, &file, None)?;
        if let Some(i) = set.iter().position(|s| !s) {
            return Err(ThemeError::MissingRole { file, role: ROLES[i].1 });
        }
        Ok(t)
    }

    /// Parses a theme file over `parent`; also says which roles the file itself set.
    fn parse(text: &str, file: &str, parent: Option<&Theme>) -> Result<(Self, Vec<bool>), ThemeError> {
        let tf: ThemeFile =
            serde_yaml::from_str(text).map_err(|source| ThemeError::Parse { file: file.into(), source })?;
        let mut styles = parent.map_or_else(|| vec![Style::new(); ROLES.len()], |p| p.styles.clone());
        let mut set = vec![false; ROLES.len()];
        for (role, spec) in &tf.roles {
            let Some(i) = ROLES.iter().position(|(_, n)| n == role) else {
                return Err(ThemeError::UnknownRole { file: file.into(), role: role.clone(), known: known_roles() });
            };
            let mut s = Style::new();
            if let Some(fg) = &spec.fg {
                s = s.fg(colour(file, role, "fg", fg)?);
            }
            if let Some(bg) = &spec.bg {
                s = s.bg(colour(file, role, "bg", bg)?);
            }
            let flags = [
                (spec.bold, Modifier::BOLD),
                (spec.dim, Modifier::DIM),
                (spec.italic, Modifier::ITALIC),
                (spec.underline, Modifier::UNDERLINED),
                (spec.reversed, Modifier::REVERSED),
            ];
            for (on, m) in flags {
                if on {
                    s = s.add_modifier(m);
                }
            }
            styles[i] = s;
            set[i] = true;
        }
        Ok((Self { name: tf.name.unwrap_or_else(|| file.into()), styles }, set))
    }

    /// A user theme file layered over its `inherits:` bundled theme.
    pub fn from_file(path: &Path) -> Result<Self, ThemeError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Io { file: file.clone(), source })?;
        let parent_name = serde_yaml::from_str::<ThemeFile>(&text)
            .map_err(|source| ThemeError::Parse { file: file.clone(), source })?
            .inherits
            .unwrap_or_else(|| "dark".into());
        let parent = Self::bundled(&parent_name).map_err(|_| ThemeError::BadParent {
            file: file.clone(),
            name: parent_name.clone(),
            known: known_themes(),
        })?;
        Self::parse(&text, &file, Some(&parent)).map(|(t, _)| t)
    }

    /// Resolves `--theme`: a file path, then `<config dir>/themes/<name>.yaml`, then a bundled
    /// name. `None` means the default (`dark`).
    pub fn resolve(name: Option<&str>, config_dir: Option<&Path>) -> Result<Self, ThemeError> {
        let Some(name) = name.filter(|n| !n.is_empty()) else { return Ok(Self::default_dark()) };
        let as_path = Path::new(name);
        if as_path.is_file() {
            return Self::from_file(as_path);
        }
        if let Some(dir) = config_dir {
            let user = dir.join("themes").join(format!("{name}.yaml"));
            if user.is_file() {
                return Self::from_file(&user);
            }
        }
        Self::bundled(name).map_err(|e| match e {
            ThemeError::NotFound { .. } => ThemeError::NotFound {
                name: name.into(),
                dir: config_dir.map_or_else(|| "-".into(), |d| d.join("themes").display().to_string()),
                known: known_themes(),
            },
            other => other,
        })
    }

    /// `NO_COLOR` (<https://no-color.org>): no colours at all; selection and state stay
    /// visible through reverse video and bold.
    #[must_use]
    pub fn without_colour(mut self) -> Self {
        for (i, (role, _)) in ROLES.iter().enumerate() {
            let s = self.styles[i];
            let mut plain = Style::new().add_modifier(s.add_modifier).remove_modifier(s.sub_modifier);
            if matches!(
                role,
                Role::Selected | Role::Marker | Role::StatusBar | Role::Mode | Role::Paused | Role::GaugeCrit
            ) {
                plain = plain.add_modifier(Modifier::REVERSED);
            }
            if matches!(role, Role::Best | Role::Review | Role::Generating | Role::TitleFocus | Role::BorderFocus) {
                plain = plain.add_modifier(Modifier::BOLD);
            }
            self.styles[i] = plain;
        }
        self.name = format!("{} (no colour)", self.name);
        self
    }
}

/// Where lem-tui's own user files live (themes/, keymap.yaml, tui.yaml):
/// `$LEM_TUI_CONFIG_DIR`, else the platform's config dir (`~/.config/lem-tui`).
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LEM_TUI_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    directories::ProjectDirs::from("", "", "lem-tui").map(|d| d.config_dir().to_owned())
}

/// True when `NO_COLOR` is set to anything non-empty.
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_theme_loads_with_every_role() {
        for (name, _) in BUNDLED {
            let t = Theme::bundled(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.name, *name);
            assert_eq!(t.styles.len(), ROLES.len());
            assert_ne!(t.style(Role::Selected), Style::new(), "{name}: selection must be visible");
        }
    }

    #[test]
    fn user_theme_inherits_and_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("themes")).expect("mkdir");
        let f = dir.path().join("themes/mine.yaml");
        std::fs::write(&f, "inherits: light\nroles:\n  best: { fg: '#ff0000', underline: true }\n").expect("write");
        let t = Theme::resolve(Some("mine"), Some(dir.path())).expect("loads");
        let light = Theme::bundled("light").expect("light");
        assert_eq!(t.style(Role::Best), Style::new().fg(Color::Rgb(255, 0, 0)).add_modifier(Modifier::UNDERLINED));
        assert_eq!(t.style(Role::Kept), light.style(Role::Kept));
    }

    #[test]
    fn bad_files_name_the_file_role_and_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, "roles:\n  best: { fg: chartreuse-ish }\n").expect("write");
        let e = Theme::resolve(f.to_str(), None).expect_err("bad colour").to_string();
        assert!(e.contains("bad.yaml") && e.contains("best") && e.contains("chartreuse-ish"), "{e}");
        std::fs::write(&f, "roles:\n  bestest: { fg: red }\n").expect("write");
        let e = Theme::resolve(f.to_str(), None).expect_err("bad role").to_string();
        assert!(e.contains("bestest"), "{e}");
        let e = Theme::resolve(Some("nope"), Some(dir.path())).expect_err("unknown").to_string();
        assert!(e.contains("nope") && e.contains("high-contrast"), "{e}");
    }

    #[test]
    fn no_colour_keeps_selection_visible() {
        let t = Theme::default_dark().without_colour();
        for (role, name) in ROLES {
            let s = t.style(*role);
            assert!(s.fg.is_none() && s.bg.is_none(), "{name} still has colour");
        }
        assert!(t.style(Role::Selected).add_modifier.contains(Modifier::REVERSED));
    }
}

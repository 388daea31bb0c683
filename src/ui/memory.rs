//! The memory gauge: what the backend measures (RSS, model and KV for llama.cpp, and the GPU's
//! memory with the model's and KV's share of it when llama.cpp offloads to one; active,
//! cache and peak for MLX, and MLX's device memory where it reports one) against the limits,
//! plus system memory and swap. Bars turn to the
//! warning role at 75 % and the critical role at 90 %.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, bytes};
use crate::app::state::State;
use crate::theme::{Role, Theme};

pub const WARN: f64 = 0.75;
pub const CRIT: f64 = 0.90;

pub fn level(ratio: f64) -> Role {
    if ratio >= CRIT {
        Role::GaugeCrit
    } else if ratio >= WARN {
        Role::GaugeWarn
    } else {
        Role::GaugeOk
    }
}

/// `label ████░░░░ used/of`; `of` = 0 draws an empty bar with "no limit".
fn bar<'a>(label: &str, used: u64, of: u64, width: usize, t: &Theme) -> Line<'a> {
    let figures =
        if of > 0 { format!(" {}/{}", bytes(used), bytes(of)) } else { format!(" {} (no limit)", bytes(used)) };
    let bar_w = width.saturating_sub(7 + figures.chars().count());
    #[allow(clippy::cast_precision_loss)]
    let ratio = if of > 0 { used as f64 / of as f64 } else { 0.0 };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let filled = ((ratio.min(1.0) * bar_w as f64).round() as usize).min(bar_w);
    Line::from(vec![
        Span::styled(format!("{label:<7}"), t.style(Role::Dim)),
        Span::styled("█".repeat(filled), t.style(level(ratio))),
        Span::styled("░".repeat(bar_w - filled), t.style(Role::GaugeEmpty)),
        Span::styled(figures, t.style(if ratio >= CRIT { Role::GaugeCrit } else { Role::Text })),
    ])
}

pub fn render(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let limits = s.settings.limits;
    let b = block("Memory", false, t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let w = usize::from(inner.width);
    if inner.height == 0 || w == 0 {
        return;
    }
    let Some(m) = &s.memory else {
        f.render_widget(Paragraph::new(Line::styled("sampling…", t.style(Role::Dim))), inner);
        return;
    };
    let mut lines = Vec::new();
    if let Some(mlx) = &m.mlx {
        lines.push(bar("active", mlx.active, limits.memory_bytes, w, t));
        lines.push(bar("cache", mlx.cache, limits.cache_bytes, w, t));
        lines.push(bar("peak", mlx.peak, limits.memory_bytes, w, t));
        if mlx.device_total > 0 {
            // The GPU's own memory (CUDA), or the unified memory Metal shares with the system:
            // what MLX holds against what the device has, limit or not.
            lines.push(bar("device", mlx.active + mlx.cache, mlx.device_total, w, t));
        }
    } else {
        lines.push(bar("RSS", m.rss, limits.memory_bytes, w, t));
    }
    if let Some(g) = &m.gpu {
        // llama.cpp offloaded to a GPU: the limit holds against the device's used memory (every
        // process's), so the bar is drawn against the limit when there is one, else the device.
        let of = if limits.memory_bytes > 0 { limits.memory_bytes } else { g.total };
        lines.push(bar("GPU", g.used, of, w, t));
    }
    lines.push(bar("system", m.system_used, m.system_total, w, t));
    if m.swap_total > 0 {
        lines.push(bar("swap", m.swap_used, m.swap_total, w, t));
    } else {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<7}", "swap"), t.style(Role::Dim)),
            Span::styled("none", t.style(Role::Dim)),
        ]));
    }
    // With a GPU, the model's and KV's share of the device (the pane has no row to spare).
    let (on, model, kv) = m.gpu.map_or(("", m.model_bytes, m.kv_bytes), |g| ("GPU ", g.model, g.kv));
    let mut extra = vec![
        Span::styled(format!("{on}model "), t.style(Role::Dim)),
        Span::styled(bytes(model), t.style(Role::Text)),
        Span::styled(" KV ", t.style(Role::Dim)),
        Span::styled(bytes(kv), t.style(Role::Text)),
    ];
    if let Some(g) = &m.gpu {
        extra.push(Span::styled(format!(" of {}", bytes(g.total)), t.style(Role::Dim)));
    }
    if let Some(p) = m.pressure {
        let (label, role) = match p {
            0 | 1 => ("normal", Role::GaugeOk),
            2 => ("warn", Role::GaugeWarn),
            _ => ("critical", Role::GaugeCrit),
        };
        extra.push(Span::styled(" pressure ", t.style(Role::Dim)));
        extra.push(Span::styled(label, t.style(role)));
    }
    lines.push(Line::from(extra));
    if m.over_limit() {
        lines.insert(0, Line::styled("over the memory limit: paused", t.style(Role::GaugeCrit)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

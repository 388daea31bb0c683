//! Throughput: decode rate now, prefill rate, time to first token, and a sparkline of the last
//! minute.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::block;
use crate::app::state::State;
use crate::theme::{Role, Theme};

pub fn render(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let b = block("Throughput", false, t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let tp = &s.throughput;
    let dim = t.style(Role::Dim);
    let txt = t.style(Role::Text);
    let opt = |v: Option<f64>, unit: &str| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}{unit}"));
    let mut decode = Line::from(vec![
        Span::styled("decode  ", dim),
        Span::styled(format!("{:.0} tok/s", tp.rate()), t.style(Role::Generating)),
    ]);
    let last = [Span::styled(" last ", dim), Span::styled(opt(tp.last_decode_tok_s, ""), txt)];
    if decode.width() + last.iter().map(Span::width).sum::<usize>() <= usize::from(inner.width) {
        decode.spans.extend(last);
    }
    let lines = vec![
        decode,
        Line::from(vec![
            Span::styled("prefill ", dim),
            Span::styled(opt(tp.prefill_tok_s, "/s"), txt),
            Span::styled(" ttft ", dim),
            Span::styled(tp.ttft.map_or_else(|| "-".into(), |d| format!("{:.2}s", d.as_secs_f64())), txt),
        ]),
    ];
    let text_h = inner.height.min(2);
    f.render_widget(Paragraph::new(lines), Rect { height: text_h, ..inner });
    let spark = Rect { y: inner.y + text_h, height: inner.height - text_h, ..inner };
    if spark.height > 0 {
        let w = usize::from(spark.width);
        let data: Vec<u64> = tp.history.iter().rev().take(w).rev().copied().collect();
        f.render_widget(Sparkline::default().data(&data).style(t.style(Role::Sparkline)), spark);
    }
}

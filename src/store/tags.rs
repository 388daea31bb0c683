//! Reading the tags that stand: the latest `decision_tags` row of each probe.

use std::collections::HashMap;

use super::{Store, StoreError};
use crate::distill::Tagging;

/// Probe row → the tags and note its latest row holds (probes never tagged are absent).
pub(crate) fn standing(store: &Store) -> Result<HashMap<i64, Tagging>, StoreError> {
    let mut stmt = store
        .conn
        .prepare(
            "SELECT t.probe_row, t.tags, t.note FROM decision_tags t
             JOIN (SELECT probe_row, max(id) AS id FROM decision_tags GROUP BY probe_row) m ON m.id = t.id",
        )
        .map_err(store.sql())?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)))
        .map_err(store.sql())?;
    let mut out = HashMap::new();
    for row in rows {
        let (probe_row, tags, note) = row.map_err(store.sql())?;
        let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| {
            StoreError::Other(format!("{}: decision_tags of probe row {probe_row}: tags: {e}", store.path.display()))
        })?;
        out.insert(probe_row, Tagging { tags, note });
    }
    Ok(out)
}

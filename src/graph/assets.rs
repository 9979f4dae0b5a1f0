//! Assets: what stages produce and what pipelines are scheduled on.
//!
//! A stage's `produces:` (a `copy_into` stage produces `<connection>.<table>` by default)
//! become the outlets of its completion task; a pipeline with `schedule: {assets: …}` runs
//! when they are produced. Checked across every spec compiled together: each consumed asset
//! has a producer or is declared in `external_assets`, and no pipeline is (through assets,
//! sensors and triggers) scheduled on itself — that would run forever. Triggers are checked
//! here too: each starts a pipeline compiled together with it.

use super::{Catalog, Lowering, Operation, PipelineTasks, Wait, WaitKind};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::parse::escape_pointer;
use crate::spec::{AssetCondition, AssetName, Schedule, Stage, StageKind};
use std::collections::{BTreeMap, BTreeSet};

impl Lowering<'_> {
    /// Checks that each trigger starts a pipeline compiled here, and not its own; returns the
    /// waits triggers add (the started pipeline depends on the one that starts it).
    pub(super) fn resolve_triggers(
        &mut self,
        unit: usize,
        pipelines: &[PipelineTasks],
        catalog: &Catalog,
    ) -> Vec<Wait> {
        let mut waits = Vec::new();
        for p in pipelines {
            for task in &p.tasks {
                let Operation::Trigger(target) = &task.operation else { continue };
                let pointer =
                    format!("/pipelines/{}/stages/{}", escape_pointer(p.id.as_str()), escape_pointer(&task.id));
                if !catalog.contains_key(&target.pipeline) {
                    let mut d = Diagnostic::error(
                        "unknown-trigger-target",
                        format!("`{}` triggers pipeline `{}`, which is not compiled here", task.id, target.pipeline),
                    )
                    .at(self.doc.span(&format!("{pointer}/pipeline")), "no such pipeline");
                    d = match did_you_mean(target.pipeline.as_str(), catalog.keys().map(|k| k.as_str())) {
                        Some(guess) => d.help(format!("did you mean `{guess}`?")),
                        None => d.help(
                            "a trigger starts a pipeline of the specs compiled together; compile its spec's folder",
                        ),
                    };
                    self.error(d);
                    continue;
                }
                if target.pipeline == p.id {
                    self.error(
                        Diagnostic::error("self-trigger", format!("`{}` triggers its own pipeline", task.id))
                            .at(self.doc.span(&format!("{pointer}/pipeline")), "every run would start another")
                            .help("use `schedule:` to repeat a pipeline"),
                    );
                    continue;
                }
                waits.push(Wait {
                    unit,
                    waiter: target.pipeline.clone(),
                    target: p.id.clone(),
                    pointer: format!("{pointer}/pipeline"),
                    kind: WaitKind::Trigger,
                });
            }
        }
        waits
    }

    /// The assets `stage` produces: its `produces:`, or a load's target table.
    pub(super) fn produces(&self, stage: &Stage) -> Vec<AssetName> {
        if let Some(list) = &stage.produces {
            return list.clone();
        }
        match &stage.kind {
            StageKind::CopyInto(copy) => {
                AssetName::new(format!("{}.{}", copy.target.connection, copy.target.table)).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The leaves of `condition` with the JSON pointer of each, under `pointer`.
fn leaves<'c>(condition: &'c AssetCondition, pointer: String, out: &mut Vec<(&'c AssetName, String)>) {
    match condition {
        AssetCondition::Asset(name) => out.push((name, pointer)),
        AssetCondition::List(items) => {
            for (i, c) in items.iter().enumerate() {
                leaves(c, format!("{pointer}/{i}"), out);
            }
        }
        AssetCondition::Any { any: items } => {
            for (i, c) in items.iter().enumerate() {
                leaves(c, format!("{pointer}/any/{i}"), out);
            }
        }
        AssetCondition::All { all: items } => {
            for (i, c) in items.iter().enumerate() {
                leaves(c, format!("{pointer}/all/{i}"), out);
            }
        }
    }
}

/// Checks every consumed asset against the producers of all specs; returns the waits that
/// assets add between pipelines (producer → consumer), for the cycle check.
pub(super) fn resolve_assets(
    lowerings: &mut [Lowering],
    lowered: &[Vec<PipelineTasks>],
    catalog: &Catalog,
) -> Vec<Wait> {
    let mut producers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for pipelines in lowered {
        for p in pipelines {
            for task in &p.tasks {
                for asset in &task.outlets {
                    producers.entry(asset.as_str()).or_default().insert(p.id.as_str());
                }
            }
        }
    }
    let external: BTreeSet<String> =
        lowerings.iter().flat_map(|l| l.spec.external_assets.iter().map(|a| a.as_str().to_owned())).collect();
    let mut waits = Vec::new();
    for (unit, pipelines) in lowered.iter().enumerate() {
        for p in pipelines {
            let Some(Schedule::Assets(condition)) = &p.schedule else { continue };
            if catalog.get(&p.id).is_none_or(|entry| entry.unit != unit) {
                continue;
            }
            let mut found = Vec::new();
            leaves(condition, format!("/pipelines/{}/schedule/assets", escape_pointer(p.id.as_str())), &mut found);
            for (asset, pointer) in found {
                match producers.get(asset.as_str()) {
                    Some(by) => {
                        for producer in by {
                            if let Some((id, _)) = catalog.get_key_value(*producer) {
                                waits.push(Wait {
                                    unit,
                                    waiter: p.id.clone(),
                                    target: id.clone(),
                                    pointer: pointer.clone(),
                                    kind: WaitKind::Asset,
                                });
                            }
                        }
                    }
                    None if external.contains(asset.as_str()) => {}
                    None => {
                        let lowering = &mut lowerings[unit];
                        let mut d = Diagnostic::error(
                            "unproduced-asset",
                            format!("pipeline `{}` is scheduled on `{asset}`, which no stage produces", p.id),
                        )
                        .at(lowering.doc.span(&pointer), "never produced, so the pipeline would never run");
                        let known = producers.keys().copied().chain(external.iter().map(String::as_str));
                        d = match did_you_mean(asset.as_str(), known) {
                            Some(guess) => d.help(format!("did you mean `{guess}`?")),
                            None => d.help(
                                "add it to a stage's `produces:`, or list it under `external_assets:` if something \
                                 outside these specs produces it",
                            ),
                        };
                        lowering.error(d);
                    }
                }
            }
        }
    }
    waits
}

//! Order and parallelism of module work (SPEC §5): lower `priority` finishes before higher
//! starts; within a priority, modules run in parallel on a rayon pool of `--jobs` threads, each
//! starting only once all its `depends_on` have succeeded. A module whose dependency failed or
//! was skipped is skipped, with the reason. Order never comes from directory listing order.
//! Each priority runs in phases: installs and updates (phase 0) before the entry points of
//! unchanged modules (`--run enabled`, phase 1).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::{Context, Result};

use crate::outcome::{ModuleResult, Outcome};

/// One unit of work.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub priority: i64,
    pub depends_on: Vec<String>,
    /// Within a priority, phase 0 finishes before phase 1 starts.
    pub phase: u8,
}

impl Node {
    fn wave(&self) -> (i64, u8) {
        (self.priority, self.phase)
    }
}

fn skipped(reason: String) -> Outcome {
    Outcome::new(ModuleResult::Skipped, Some(reason))
}

/// "rolled back", "failed", … for messages.
fn words(r: ModuleResult) -> String {
    r.as_str().replace('_', " ")
}

/// The work of a run, wave by wave (a wave: the nodes of one priority and phase). `before` and
/// `after` let the caller do once per wave what would cost too much once per node (apply stages
/// a whole wave and makes it durable with one sync, and commits it with one more).
pub trait Waves: Sync {
    /// Called before any node of a wave runs, with the wave's nodes that are not already
    /// skipped (in the order given to [`run_waves`]), on the worker pool (so rayon's parallel
    /// iterators use its threads). Returns the outcomes of those that cannot run: they count as
    /// finished (and failed, unless their outcome is a success) before the wave starts.
    fn before(&self, _wave: &[&str]) -> BTreeMap<String, Outcome> {
        BTreeMap::new()
    }

    /// One node's work.
    fn work(&self, name: &str) -> Outcome;

    /// Called once every node of the wave has finished (or was skipped); may change the
    /// outcomes of the wave's nodes before the next wave looks at them.
    fn after(&self, _wave: &[&str], _outcomes: &mut BTreeMap<String, Outcome>) {}
}

/// [`Waves`] for a plain function of one node.
struct EachNode<W>(W);

impl<W: Fn(&str) -> Outcome + Sync> Waves for EachNode<W> {
    fn work(&self, name: &str) -> Outcome {
        (self.0)(name)
    }
}

/// Runs `work` for every node, honouring priorities and dependencies. A dependency that is not a
/// node is asked of `external`: `Ok(())` when it is satisfied (installed and not being changed),
/// else the reason the dependant must be skipped.
pub fn run<W, E>(
    nodes: &[Node],
    jobs: usize,
    external: E,
    work: W,
) -> Result<BTreeMap<String, Outcome>>
where
    W: Fn(&str) -> Outcome + Sync,
    E: Fn(&str) -> std::result::Result<(), String>,
{
    run_waves(nodes, jobs, external, &EachNode(work))
}

/// [`run`] with per-wave hooks (see [`Waves`]).
pub fn run_waves<W, E>(
    nodes: &[Node],
    jobs: usize,
    external: E,
    waves_work: &W,
) -> Result<BTreeMap<String, Outcome>>
where
    W: Waves,
    E: Fn(&str) -> std::result::Result<(), String>,
{
    let work = |name: &str| waves_work.work(name);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .thread_name(|i| format!("updater-job-{i}"))
        .build()
        .context("starting the worker pool")?;
    let by_name: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let waves: BTreeSet<(i64, u8)> = nodes.iter().map(Node::wave).collect();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();

    for wave in waves {
        let priority = wave.0;
        let group: Vec<&Node> = nodes.iter().filter(|n| n.wave() == wave).collect();
        // Resolve dependencies that lie outside this group; count those inside it.
        let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
        let mut dependants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut ready = Vec::new();
        let mut inside_deps: Vec<(&Node, usize)> = Vec::new();
        for node in &group {
            let mut inside = 0;
            let mut skip = None;
            for dep in &node.depends_on {
                match by_name.get(dep.as_str()) {
                    Some(d) if d.wave() == wave => {
                        inside += 1;
                        dependants
                            .entry(d.name.as_str())
                            .or_default()
                            .push(&node.name);
                    }
                    Some(d) if d.priority > priority => {
                        skip = Some(format!(
                            "depends on {dep}, which has a later priority ({} > {priority})",
                            d.priority
                        ));
                    }
                    // An installed module whose entry runs in a later phase of this priority is
                    // not changing: it satisfies an install that depends on it.
                    Some(d) if d.wave() > wave => {}
                    Some(_) => match outcomes.get(dep.as_str()) {
                        Some(o) if o.is_success() => {}
                        Some(o) => skip = Some(format!("dependency {dep} was {}", words(o.result))),
                        None => skip = Some(format!("dependency {dep} did not run")),
                    },
                    None => {
                        if let Err(reason) = external(dep) {
                            skip = Some(reason);
                        }
                    }
                }
                if skip.is_some() {
                    break;
                }
            }
            if let Some(reason) = skip {
                outcomes.insert(node.name.clone(), skipped(reason));
            } else {
                inside_deps.push((node, inside));
            }
        }
        let runnable: Vec<&str> = inside_deps.iter().map(|(n, _)| n.name.as_str()).collect();
        let refused = if runnable.is_empty() {
            BTreeMap::new()
        } else {
            pool.install(|| waves_work.before(&runnable))
        };
        for (node, inside) in inside_deps {
            if let Some(o) = refused.get(&node.name) {
                outcomes.insert(node.name.clone(), o.clone());
            } else if inside == 0 {
                ready.push(node.name.as_str());
            } else {
                waiting.insert(node.name.as_str(), inside);
            }
        }
        // Dependants of modules skipped or refused above are skipped too (a refused module
        // that succeeded releases them like one that ran).
        let initially_skipped: Vec<String> = group
            .iter()
            .filter(|n| outcomes.get(&n.name).is_some_and(|o| !o.is_success()))
            .map(|n| n.name.clone())
            .collect();
        let initially_done: Vec<&str> = group
            .iter()
            .filter(|n| outcomes.get(&n.name).is_some_and(Outcome::is_success))
            .map(|n| n.name.as_str())
            .collect();
        for name in initially_done {
            for d in dependants.get(name).into_iter().flatten() {
                if let Some(count) = waiting.get_mut(d) {
                    *count -= 1;
                    if *count == 0 {
                        waiting.remove(d);
                        ready.push(d);
                    }
                }
            }
        }
        let state = Mutex::new(GroupState {
            outcomes: std::mem::take(&mut outcomes),
            waiting,
        });
        for name in &initially_skipped {
            let mut st = lock(&state);
            st.skip_dependants(name, &dependants);
        }
        pool.scope(|s| {
            for name in ready {
                spawn(s, name, &state, &dependants, &work);
            }
        });
        let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
        outcomes = st.outcomes;
        // Anything still waiting was blocked by a module that never finished (cannot happen
        // without a cycle, which planning rejects); skip it rather than lose it.
        for name in st.waiting.keys() {
            outcomes
                .entry(name.to_string())
                .or_insert_with(|| skipped("its dependencies never finished".into()));
        }
        let names: Vec<&str> = group.iter().map(|n| n.name.as_str()).collect();
        pool.install(|| waves_work.after(&names, &mut outcomes));
    }
    Ok(outcomes)
}

struct GroupState<'a> {
    outcomes: BTreeMap<String, Outcome>,
    waiting: BTreeMap<&'a str, usize>,
}

impl<'a> GroupState<'a> {
    /// Marks every (transitive) dependant of `failed` in this group as skipped.
    fn skip_dependants(&mut self, failed: &str, dependants: &BTreeMap<&'a str, Vec<&'a str>>) {
        let mut stack = vec![failed.to_string()];
        while let Some(f) = stack.pop() {
            for d in dependants.get(f.as_str()).into_iter().flatten() {
                if self.waiting.remove(d).is_some() {
                    let how = self
                        .outcomes
                        .get(&f)
                        .map(|o| words(o.result))
                        .unwrap_or_else(|| "skipped".into());
                    self.outcomes
                        .insert(d.to_string(), skipped(format!("dependency {f} was {how}")));
                    stack.push(d.to_string());
                }
            }
        }
    }
}

fn lock<'m, 'a>(m: &'m Mutex<GroupState<'a>>) -> std::sync::MutexGuard<'m, GroupState<'a>> {
    // The state is only mutated by short, non-panicking sections; a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn spawn<'s, 'a: 's, W>(
    s: &rayon::Scope<'s>,
    name: &'a str,
    state: &'s Mutex<GroupState<'a>>,
    dependants: &'s BTreeMap<&'a str, Vec<&'a str>>,
    work: &'s W,
) where
    W: Fn(&str) -> Outcome + Sync,
{
    s.spawn(move |s| {
        let outcome = work(name);
        let success = outcome.is_success();
        let mut now_ready = Vec::new();
        {
            let mut st = lock(state);
            st.outcomes.insert(name.to_string(), outcome);
            if success {
                for d in dependants.get(name).into_iter().flatten() {
                    if let Some(count) = st.waiting.get_mut(d) {
                        *count -= 1;
                        if *count == 0 {
                            st.waiting.remove(d);
                            now_ready.push(*d);
                        }
                    }
                }
            } else {
                st.skip_dependants(name, dependants);
            }
        }
        for d in now_ready {
            spawn(s, d, state, dependants, work);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn node(name: &str, priority: i64, deps: &[&str]) -> Node {
        Node {
            name: name.into(),
            priority,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            phase: 0,
        }
    }

    fn ok() -> Outcome {
        Outcome::new(ModuleResult::Applied, None)
    }

    #[test]
    fn priorities_and_dependencies_order_the_work() {
        let nodes = vec![
            node("late", 200, &[]),
            node("c", 100, &["b"]),
            node("b", 100, &["a"]),
            node("a", 100, &[]),
            node("first", 10, &[]),
        ];
        let order = Mutex::new(Vec::new());
        let out = run(
            &nodes,
            4,
            |_| Ok(()),
            |n| {
                order.lock().unwrap().push(n.to_string());
                ok()
            },
        )
        .unwrap();
        let order = order.into_inner().unwrap();
        assert_eq!(order, vec!["first", "a", "b", "c", "late"]);
        assert!(out.values().all(|o| o.result == ModuleResult::Applied));
    }

    #[test]
    fn failure_skips_transitive_dependants_only() {
        let nodes = vec![
            node("a", 1, &[]),
            node("b", 1, &["a"]),
            node("c", 1, &["b"]),
            node("d", 1, &[]),
            node("e", 2, &["c"]),
            node("f", 2, &["ext-bad"]),
            node("g", 1, &["later"]),
            node("later", 5, &[]),
        ];
        let out = run(
            &nodes,
            2,
            |d| {
                if d == "ext-bad" {
                    Err("dependency ext-bad is invalid".into())
                } else {
                    Ok(())
                }
            },
            |n| {
                if n == "a" {
                    Outcome::new(ModuleResult::RolledBack, Some("boom".into()))
                } else {
                    ok()
                }
            },
        )
        .unwrap();
        assert_eq!(out["a"].result, ModuleResult::RolledBack);
        assert_eq!(out["b"].result, ModuleResult::Skipped);
        assert!(out["b"]
            .error
            .as_ref()
            .unwrap()
            .contains("dependency a was rolled back"));
        assert_eq!(out["c"].result, ModuleResult::Skipped);
        assert_eq!(out["d"].result, ModuleResult::Applied);
        assert_eq!(out["e"].result, ModuleResult::Skipped);
        assert_eq!(out["f"].result, ModuleResult::Skipped);
        assert!(out["g"].error.as_ref().unwrap().contains("later priority"));
        assert_eq!(out["later"].result, ModuleResult::Applied);
    }

    #[test]
    fn run_phase_follows_the_installs_of_its_priority() {
        let mut nodes = vec![
            node("install", 1, &["runner"]),
            node("runner", 1, &[]),
            node("later", 2, &[]),
        ];
        nodes[1].phase = 1;
        let order = Mutex::new(Vec::new());
        let out = run(
            &nodes,
            4,
            |_| Ok(()),
            |n| {
                order.lock().unwrap().push(n.to_string());
                ok()
            },
        )
        .unwrap();
        assert_eq!(
            order.into_inner().unwrap(),
            vec!["install", "runner", "later"]
        );
        assert!(out.values().all(|o| o.result == ModuleResult::Applied));
    }

    #[test]
    fn wave_hooks_bracket_each_wave_and_refused_nodes_skip_their_dependants() {
        struct Hooks {
            log: Mutex<Vec<String>>,
        }
        impl Waves for Hooks {
            fn before(&self, wave: &[&str]) -> BTreeMap<String, Outcome> {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("before {}", wave.join(",")));
                wave.iter()
                    .filter(|n| **n == "bad")
                    .map(|n| {
                        let o = Outcome::new(ModuleResult::RolledBack, Some("no".into()));
                        (n.to_string(), o)
                    })
                    .collect()
            }
            fn work(&self, name: &str) -> Outcome {
                self.log.lock().unwrap().push(format!("work {name}"));
                ok()
            }
            fn after(&self, wave: &[&str], outcomes: &mut BTreeMap<String, Outcome>) {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("after {}", wave.join(",")));
                if let Some(o) = outcomes.get_mut("a") {
                    o.error = Some("seen by after".into());
                }
            }
        }
        let nodes = vec![
            node("a", 1, &[]),
            node("bad", 1, &[]),
            node("needs-bad", 1, &["bad"]),
            node("skipped", 1, &["ext-missing"]),
            node("b", 2, &["a"]),
        ];
        let hooks = Hooks {
            log: Mutex::new(Vec::new()),
        };
        let external = |_: &str| Err("not installed".to_string());
        let out = run_waves(&nodes, 1, external, &hooks).unwrap();
        assert_eq!(
            hooks.log.into_inner().unwrap(),
            vec![
                "before a,bad,needs-bad",
                "work a",
                "after a,bad,needs-bad,skipped",
                "before b",
                "work b",
                "after b",
            ]
        );
        assert_eq!(out["bad"].result, ModuleResult::RolledBack);
        assert_eq!(out["needs-bad"].result, ModuleResult::Skipped);
        assert!(out["needs-bad"].error.as_ref().unwrap().contains("bad"));
        assert_eq!(out["skipped"].result, ModuleResult::Skipped);
        assert_eq!(out["a"].error.as_deref(), Some("seen by after"));
        assert_eq!(out["b"].result, ModuleResult::Applied);
    }

    #[test]
    fn runs_in_parallel_up_to_jobs() {
        let nodes: Vec<Node> = (0..8).map(|i| node(&format!("m{i}"), 1, &[])).collect();
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        run(
            &nodes,
            3,
            |_| Ok(()),
            |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(50));
                running.fetch_sub(1, Ordering::SeqCst);
                ok()
            },
        )
        .unwrap();
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak > 1 && peak <= 3, "peak {peak}");
    }
}

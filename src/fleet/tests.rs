use std::io::Write;
use std::path::{Path, PathBuf};

use super::features::SessionShape;
use super::file::{ModelFile, ModelFileError, FORMAT_VERSION, LINFA_VERSION};
use super::train::{train, TrainError};
use super::Fleet;
use crate::config::Config;
use crate::event::Action;

/// A small fleet: readers (short read sessions) and writers (longer
/// write sessions), `per_kind` agents of each, 40 sessions each.
fn fleet_file(dir: &Path, per_kind: usize) -> PathBuf {
    let path = dir.join("train.jsonl");
    let mut f = std::fs::File::create(&path).expect("create");
    let day0 = 1_790_000_000_000i64;
    let mut n = 0;
    for kind in ["reader", "writer"] {
        for a in 0..per_kind {
            for s in 0..40 {
                let start = day0 + s * 3_600_000 + a as i64 * 60_000;
                let calls = if kind == "reader" { 4 } else { 8 };
                for c in 0..calls {
                    n += 1;
                    let (tool, action) = match (kind, c % 2) {
                        ("reader", _) => ("get_doc", "read"),
                        (_, 0) => ("update_row", "write"),
                        _ => ("read_row", "read"),
                    };
                    let ts = chrono::DateTime::from_timestamp_millis(start + c * 20_000)
                        .expect("ts")
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    // Writers update 1 to 20 rows at a time.
                    let rows = 1 + (s * 7 + c) % 20;
                    writeln!(
                        f,
                        r#"{{"event_id":"e{n}","ts":"{ts}","agent_id":"{kind}-{a}","session_id":"s-{kind}-{a}-{s}","tool":"{tool}","resource_type":"doc","resource_id":"doc-{}","action":"{action}","args":{{"rows":{rows}}}}}"#,
                        (s * 7 + c) % 23
                    )
                    .expect("write");
                }
            }
        }
    }
    path
}

#[test]
fn trains_groups_priors_and_session_models_and_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fleet_file(dir.path(), 3);
    let cfg = Config::default();
    let model = train(&[data], &cfg).expect("trains");
    assert_eq!(model.training.agents, 6);
    assert_eq!(model.training.tool_calls, 3 * 40 * 4 + 3 * 40 * 8);
    assert!(model.training.digest.starts_with("sha256:"));
    assert!(
        model.training.clustering.contains("silhouette"),
        "{}",
        model.training.clustering
    );
    // Readers and writers do not share a group.
    let group_of = |id: &str| {
        model
            .groups
            .iter()
            .find(|g| g.members.iter().any(|m| m == id))
            .map(|g| g.id)
    };
    assert_ne!(group_of("reader-0"), group_of("writer-0"));
    assert_eq!(group_of("reader-0"), group_of("reader-2"));
    let writers = &model.groups[group_of("writer-0").expect("grouped") as usize];
    assert!(writers.session_model.is_some());
    assert!(writers
        .prior
        .shared_tools
        .iter()
        .any(|(t, share)| t == "update_row" && *share == 1.0));

    let path = dir.path().join("fleet.json");
    model.save(&path).expect("saves");
    let back = ModelFile::load(&path).expect("loads");
    assert_eq!(back.groups.len(), model.groups.len());
    let text = back.describe();
    assert!(
        text.contains("format:        warden-fleet-model version 1"),
        "{text}"
    );
    assert!(text.contains("members"), "{text}");

    // The session model judges a writer session of 30 deletes in a minute
    // as unlike its group, and an ordinary one as usual.
    let fleet = Fleet::new(back);
    let g = fleet
        .assign(
            "writer-1",
            None,
            &crate::baseline::Profile::new(0),
            None,
            &[],
        )
        .expect("a training member keeps its group");
    let mut usual = SessionShape::default();
    for c in 0..4u32 {
        let action = if c % 2 == 0 {
            Action::Write
        } else {
            Action::Read
        };
        usual = usual.with_call(action, c as i64 * 20_000, c / 2, c < 2, 1);
    }
    assert!(fleet.session_reason(g, &usual, 8.0).is_none());
    let mut odd = SessionShape::default();
    for c in 0..30u32 {
        odd = odd.with_call(Action::Delete, c as i64 * 2_000, c, c == 0, 1);
    }
    let (bits, detail) = fleet.session_reason(g, &odd, 8.0).expect("unusual session");
    assert!(bits > 1.0, "{bits}");
    assert!(matches!(
        detail,
        crate::score::Detail::SessionShape { deletes: 30, .. }
    ));
    // An unknown agent with no class and no history has no group yet.
    assert_eq!(
        fleet.assign(
            "new-agent",
            None,
            &crate::baseline::Profile::new(0),
            None,
            &[]
        ),
        None
    );

    // Each group carries its prior as pseudo-calls, by name, and the
    // threshold calibrated on members scored against the others' prior.
    let prior = writers.prior.profile.as_ref().expect("prior profile");
    assert_eq!(prior.calls, Config::default().fleet.prior_calls);
    let names: Vec<&str> = prior.tools.iter().map(|t| t.name.as_str()).collect();
    assert!(
        names.contains(&"update_row") && names.contains(&"read_row"),
        "{names:?}"
    );
    assert!(!prior.transitions.is_empty());
    assert!(writers.prior.blend_threshold_bits.is_some());
    assert!(writers.prior.blend_sessions > 0);
    assert!(text.contains("prior profile:"), "{text}");

    let fleet = std::sync::Arc::new(fleet);
    engine_hook(fleet.clone());
    cross_group_hook(fleet.clone());
    placement_hook(fleet.clone());
    blend_hook(fleet);
}

/// Placement by catalogue: a new agent that nothing else places joins the
/// group whose members use most of the tools it has called, moving when a
/// later tool tips the count; a group that knows under half of its tools
/// lends it only the prior's catalogue-free part.
fn placement_hook(fleet: std::sync::Arc<Fleet>) {
    let mut cfg = Config::default();
    cfg.fleet.blend_prior = true;
    let of = |id: &str| fleet.assign(id, None, &crate::baseline::Profile::new(0), None, &[]);
    let (readers, writers) = (of("reader-0"), of("writer-0"));
    assert_ne!(readers, writers);
    let mut engine = crate::engine::Engine::new(&cfg);
    engine.set_fleet(Some(fleet.clone()));
    let day = 1_790_000_000_000 + 5 * 3_600_000;
    // (group, whether it lends its catalogue) after each call.
    let mut calls = |agent: &str, tools: &[(&str, &str)]| -> Vec<(Option<u16>, bool)> {
        tools
            .iter()
            .enumerate()
            .map(|(i, (tool, action))| {
                feed_doc_call(
                    &mut engine,
                    (&format!("p{agent}{i}"), day + i as i64 * 20_000),
                    (agent, &format!("s-{agent}")),
                    (tool, action, "doc-3"),
                );
                let a = engine.agent(agent).expect("agent");
                (a.group(), a.lends_catalogue())
            })
            .collect()
    };
    // First a tool only readers use, then two only writers use.
    let mover = calls(
        "mover",
        &[
            ("get_doc", "read"),
            ("update_row", "write"),
            ("read_row", "read"),
        ],
    );
    assert_eq!(
        mover,
        [(readers, true), (readers, true), (writers, true)],
        "a tie holds, 2 of 3 moves it"
    );
    // Placed with the writers by its first tool, it then calls three tools
    // no writer uses: the group knows 1 of 2, 1 of 3, then 1 of 4.
    let faxer = calls(
        "faxer",
        &[
            ("update_row", "write"),
            ("send_fax", "write"),
            ("fax_status", "read"),
            ("print_fax", "write"),
        ],
    );
    assert_eq!(
        faxer,
        [
            (writers, true),
            (writers, true),
            (writers, false),
            (writers, false)
        ]
    );
}

/// Feeds `engine` one live call of `agent` on a doc at `ms` and commits
/// it; returns its (score, threshold, basis).
fn feed_doc_call(
    engine: &mut crate::engine::Engine,
    (event_id, ms): (&str, i64),
    (agent, session): (&str, &str),
    (tool, action, id): (&str, &str, &str),
) -> (f32, f32, crate::decide::Basis) {
    let ts = chrono::DateTime::from_timestamp_millis(ms)
        .expect("ts")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let text = format!(
        r#"{{"event_id":"{event_id}","ts":"{ts}","agent_id":"{agent}","session_id":"{session}","tool":"{tool}","resource_type":"doc","resource_id":"{id}","action":"{action}"}}"#
    );
    let Ok(crate::event::Event::ToolCall(call)) = crate::ingest::decode::decode_str(&text) else {
        panic!("decodes");
    };
    let ev = engine.evaluate(&call, crate::engine::Phase::Live);
    let out = (ev.score.total, ev.decision.threshold, ev.decision.basis);
    engine.commit(ev);
    out
}

/// Scores one writer-like session of a new agent (a usual call, then a
/// call of a tool no writer uses) with `cfg`; returns both evaluations'
/// (score, threshold, basis).
fn new_writer_scores(
    fleet: &std::sync::Arc<Fleet>,
    cfg: &Config,
    agent: &str,
) -> Vec<(f32, f32, crate::decide::Basis)> {
    let mut engine = crate::engine::Engine::new(cfg);
    engine.set_fleet(Some(fleet.clone()));
    let calls = [
        ("update_row", "write", "doc-3"),
        ("read_row", "read", "doc-3"),
        ("drop_table", "admin", "doc-3"),
    ];
    calls
        .into_iter()
        .enumerate()
        .map(|(i, call)| {
            // An hour of the training fleet's days.
            let ms = 1_790_000_000_000 + 5 * 3_600_000 + i as i64 * 20_000;
            feed_doc_call(&mut engine, (&format!("n{i}"), ms), (agent, "s-new"), call)
        })
        .collect()
}

/// The blend hook: a new agent put in the writers' group by an agent-id
/// pattern is scored against the group prior from its first call, judged
/// against the group's blend threshold, finds the writers' usual calls
/// cheaper than without the prior and a tool no writer uses dear; and the
/// prior holds under another fingerprint key.
fn blend_hook(fleet: std::sync::Arc<Fleet>) {
    let mut cfg = Config::default();
    cfg.fleet.blend_prior = true;
    cfg.fleet.assign = vec![crate::config::fleet::AssignRule {
        agents: vec!["writer-new-*".into()],
        peer: "writer-0".into(),
    }];
    let group = fleet.assign(
        "writer-0",
        None,
        &crate::baseline::Profile::new(0),
        None,
        &[],
    );
    let with = new_writer_scores(&fleet, &cfg, "writer-new-1");
    let t = fleet.blend_threshold(group).expect("blend threshold");
    for (_, threshold, basis) in &with {
        assert_eq!(*basis, crate::decide::Basis::Group);
        assert_eq!(*threshold, t);
    }
    let mut off = cfg.clone();
    off.fleet.blend_prior = false;
    let without = new_writer_scores(&fleet, &off, "writer-new-1");
    assert!(
        with[1].0 < without[1].0,
        "a usual writer call costs {} bits with the prior, {} without",
        with[1].0,
        without[1].0
    );
    assert!(
        with[2].0 > with[1].0 + 4.0,
        "a tool no writer uses ({} bits) against a usual call ({} bits)",
        with[2].0,
        with[1].0
    );
    // A member of the training fleet is in the prior already: the blend
    // leaves it as it is.
    assert_eq!(
        new_writer_scores(&fleet, &cfg, "writer-0"),
        new_writer_scores(&fleet, &off, "writer-0")
    );
    // Once its own sessions calibrate a threshold, an agent is judged on
    // its own evidence: the prior no longer shapes its scores.
    let calibrated = |blend: bool| {
        let mut c = cfg.clone();
        c.fleet.blend_prior = blend;
        c.policy.warmup_events = 0;
        c.policy.calibration_warmup_events = 0;
        c.policy.calibration_min_sessions = 2.0;
        let mut engine = crate::engine::Engine::new(&c);
        engine.set_fleet(Some(fleet.clone()));
        let mut scores = Vec::new();
        for s in 0..4 {
            for (i, tool) in ["update_row", "read_row"].into_iter().enumerate() {
                let ms = 1_790_000_000_000 + s * 86_400_000 + i as i64 * 20_000;
                let (score, ..) = feed_doc_call(
                    &mut engine,
                    (&format!("c{s}-{i}"), ms),
                    ("writer-new-3", &format!("s{s}")),
                    (tool, "write", &format!("doc-{s}")),
                );
                scores.push(score);
            }
            engine.close_all();
        }
        scores
    };
    let (blended, own) = (calibrated(true), calibrated(false));
    assert_ne!(blended[0], own[0], "the blend applies while young");
    assert_eq!(blended[6..], own[6..], "and not once calibrated");
    // The prior is stored by name: another hash key scores alike.
    let mut keyed = cfg.clone();
    keyed.detector.hash_key = "00112233445566778899aabbccddeeff".into();
    let rekeyed = new_writer_scores(&fleet, &keyed, "writer-new-1");
    for (a, b) in with.iter().zip(&rekeyed) {
        assert!((a.0 - b.0).abs() < 0.01, "{} bits against {}", a.0, b.0);
    }
    // An agent of the group whose first tool no member uses keeps only
    // the prior's catalogue-free rates, judged against the young threshold.
    let foreign = {
        use crate::engine::{Engine, Phase};
        let mut engine = Engine::new(&cfg);
        engine.set_fleet(Some(fleet.clone()));
        let text = r#"{"event_id":"f0","ts":"2026-09-21T12:00:00.000Z","agent_id":"writer-new-2","session_id":"s-f","tool":"send_fax","resource_id":"fax-1","action":"write"}"#;
        let Ok(crate::event::Event::ToolCall(call)) = crate::ingest::decode::decode_str(text)
        else {
            panic!("decodes");
        };
        let ev = engine.evaluate(&call, Phase::Live);
        (ev.decision.threshold, ev.decision.basis)
    };
    assert_eq!(
        foreign,
        (
            fleet.young_threshold(group).expect("young threshold"),
            crate::decide::Basis::Group
        )
    );
    // The tools a new agent calls first pick its group when nothing else
    // does.
    assert_eq!(fleet.group_of_tool("update_row"), group);
    // Amounts: with no rows of its own, a new writer's update of 5,000
    // rows is judged against the most any writer updated (20); 12 rows is
    // within it. Without the prior it has nothing to judge by.
    let argument_bits = |cfg: &Config, rows: u32| {
        use crate::engine::{Engine, Phase};
        let mut engine = Engine::new(cfg);
        engine.set_fleet(Some(fleet.clone()));
        let text = format!(
            r#"{{"event_id":"r0","ts":"2026-09-21T05:00:00.000Z","agent_id":"writer-new-4","session_id":"s-r","tool":"update_row","resource_type":"doc","resource_id":"doc-3","action":"write","args":{{"rows":{rows}}}}}"#
        );
        let Ok(crate::event::Event::ToolCall(call)) = crate::ingest::decode::decode_str(&text)
        else {
            panic!("decodes");
        };
        let ev = engine.evaluate(&call, Phase::Live);
        ev.score
            .reasons
            .iter()
            .filter(|r| r.signal == crate::score::Signal::Argument)
            .map(|r| r.bits)
            .sum::<f32>()
    };
    assert!(argument_bits(&cfg, 5_000) > 10.0);
    assert_eq!(argument_bits(&cfg, 12), 0.0);
    assert_eq!(argument_bits(&off, 5_000), 0.0);
    assert!((argument_bits(&keyed, 5_000) - argument_bits(&cfg, 5_000)).abs() < 0.01);
}

/// A reader's first call of a writers' tool is another role's work: a
/// `cross_group` reason priced by the fleet's count; a tool of its own
/// group or one no group uses gets none.
fn cross_group_hook(fleet: std::sync::Arc<Fleet>) {
    use crate::engine::{Engine, Phase};
    let (groups, share) = fleet.cross_group().expect("the count is trained");
    assert_eq!(groups.len(), fleet.file().groups.len());
    let c = fleet.file().cross_group.expect("counted");
    assert_eq!(c.cross, 0, "no member uses another group's tool");
    assert!(c.tools >= 6, "{c:?}");
    assert_eq!(share, 0.5 / (c.tools as f32 + 1.0));
    let mut cfg = Config::default();
    cfg.policy.calibration_min_sessions = 1.0;
    let mut engine = Engine::new(&cfg);
    engine.set_fleet(Some(fleet.clone()));
    let mut cross = |agent: &str, tool: &str, i: u32, close: bool| {
        let text = format!(
            r#"{{"event_id":"cg{i}","ts":"2026-10-01T10:{i:02}:00.000Z","agent_id":"{agent}","session_id":"s-cg{i}","tool":"{tool}","resource_type":"doc","resource_id":"doc-{i}","action":"read"}}"#
        );
        let Ok(crate::event::Event::ToolCall(call)) = crate::ingest::decode::decode_str(&text)
        else {
            panic!("decodes");
        };
        let ev = engine.evaluate(&call, Phase::Live);
        let bits = ev
            .score
            .reasons
            .iter()
            .filter(|r| r.signal == crate::score::Signal::CrossGroup)
            .map(|r| r.bits)
            .sum::<f32>();
        let text = engine
            .explain(&ev)
            .iter()
            .map(|r| r.detail.clone())
            .collect::<Vec<_>>()
            .join(" | ");
        engine.commit(ev);
        if close {
            engine.close_all();
        }
        (bits, text)
    };
    // Young, its first calls are no take-up: its catalogue is unknown.
    assert_eq!(cross("reader-1", "get_doc", 10, false).0, 0.0);
    assert_eq!(cross("reader-1", "read_row", 11, false).0, 0.0);
    assert_eq!(cross("reader-0", "get_doc", 1, true).0, 0.0);
    let (bits, text) = cross("reader-0", "read_row", 2, false);
    assert!((bits + share.log2()).abs() < 1e-3, "{bits}");
    assert!(
        text.contains("`read_row` is a tool of another peer group's agents"),
        "{text}"
    );
    assert_eq!(cross("reader-0", "drop_table", 3, false).0, 0.0);
}

/// The engine's fleet hook: a new agent is judged against the fleet's
/// young threshold (basis `group`) instead of warm-up, and a member's
/// session of deletes gets a `session_shape` reason.
fn engine_hook(fleet: std::sync::Arc<Fleet>) {
    use crate::engine::{Engine, Phase};
    use crate::ingest::decode::decode_str;
    let mut cfg = Config::default();
    cfg.fleet.group_threshold = true;
    cfg.fleet.session_model = true;
    cfg.fleet.session_floor_bits = 8.0;
    let mut engine = Engine::new(&cfg);
    engine.set_fleet(Some(fleet.clone()));
    let line = |agent: &str, i: u32, action: &str| {
        format!(
            r#"{{"event_id":"x{agent}{i}","ts":"2026-10-01T10:00:{:02}.000Z","agent_id":"{agent}","session_id":"s-{agent}","tool":"drop_row","resource_id":"row-{i}","action":"{action}"}}"#,
            i * 2
        )
    };
    let text = line("newcomer", 0, "read");
    let Ok(crate::event::Event::ToolCall(call)) = decode_str(&text) else {
        panic!("decodes");
    };
    let ev = engine.evaluate(&call, Phase::Live);
    assert_eq!(ev.decision.basis, crate::decide::Basis::Group);
    assert_eq!(Some(ev.decision.threshold), fleet.young_threshold(None));
    engine.commit(ev);

    let mut shaped = false;
    for i in 0..30 {
        let text = line("writer-0", i, "delete");
        let Ok(crate::event::Event::ToolCall(call)) = decode_str(&text) else {
            panic!("decodes");
        };
        let ev = engine.evaluate(&call, Phase::Live);
        shaped |= ev
            .score
            .reasons
            .iter()
            .any(|r| r.signal == crate::score::Signal::SessionShape);
        engine.commit(ev);
    }
    assert!(
        shaped,
        "30 deletes in a minute never gave a session_shape reason"
    );
}

#[test]
fn fleet_config_names_a_bad_key() {
    let mut cfg = Config::default();
    cfg.fleet.session_floor_bits = -1.0;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("fleet.session-floor-bits"), "{e}");
    let mut cfg = Config::default();
    cfg.fleet.prior_calls = 0.0;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("fleet.prior-calls"), "{e}");
    let cfg = Config::parse("[[fleet.assign]]\nagents = []\npeer = \"bank-assist-corporate\"\n")
        .expect("parses");
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("fleet.assign[0].agents"), "{e}");
}

#[test]
fn empty_training_set_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.jsonl");
    std::fs::write(&path, "not json\n\n{\"kind\":\"prompt\"}\n").expect("write");
    let err = train(&[path], &Config::default()).unwrap_err();
    assert!(
        matches!(err, TrainError::EmptyTrainingSet { rejected: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("empty.jsonl"), "{err}");
    assert!(matches!(
        train(&[], &Config::default()),
        Err(TrainError::NoInput)
    ));
}

#[test]
fn single_agent_fleet_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fleet_file(dir.path(), 1);
    let text = std::fs::read_to_string(&data).expect("read");
    let one: String = text
        .lines()
        .filter(|l| l.contains("reader-0"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&data, one).expect("write");
    let err = train(&[data], &Config::default()).unwrap_err();
    assert!(
        matches!(err, TrainError::SingleAgent { ref agent } if agent == "reader-0"),
        "{err}"
    );
}

#[test]
fn missing_training_file_names_it() {
    let err = train(&[PathBuf::from("/nonexistent/t.jsonl")], &Config::default()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/t.jsonl"), "{err}");
}

fn trained_text() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fleet_file(dir.path(), 2);
    let model = train(&[data], &Config::default()).expect("trains");
    serde_json::to_string_pretty(&model).expect("json")
}

#[test]
fn bad_model_files_fail_with_the_mismatch_named() {
    let text = trained_text();
    let p = Path::new("models/fleet.json");
    let load = |t: &str| ModelFile::from_slice(p, t.as_bytes()).unwrap_err();

    let e = load(&text[..text.len() / 2]);
    assert!(matches!(e, ModelFileError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(matches!(load(""), ModelFileError::Truncated { len: 0, .. }));

    let e = load("PK\u{3}\u{4} zip archive");
    assert!(matches!(e, ModelFileError::Foreign { .. }), "{e}");
    let e = load(r#"{"format":"onnx","format_version":1}"#);
    assert!(e.to_string().contains("\"onnx\""), "{e}");
    let e = load(r#"{"weights":[1,2,3]}"#);
    assert!(matches!(e, ModelFileError::Foreign { .. }), "{e}");

    let older = text.replacen(
        &format!("\"format_version\": {FORMAT_VERSION}"),
        "\"format_version\": 0",
        1,
    );
    let e = load(&older);
    assert!(
        matches!(
            e,
            ModelFileError::Version {
                found: 0,
                expected: FORMAT_VERSION,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("warden train"), "{e}");

    let renamed = text.replacen("\"ln_tools\"", "\"n_tools\"", 1);
    let e = load(&renamed);
    assert!(
        matches!(e, ModelFileError::Schema { which: "agent", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("n_tools"), "{e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["agent_scale"] = serde_json::json!([1.0]);
    let e = load(&v.to_string());
    assert!(matches!(e, ModelFileError::Corrupt { .. }), "{e}");
}

#[test]
fn recorded_linfa_version_matches_the_lock_file() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .expect("Cargo.lock");
    let entry = format!("name = \"linfa\"\nversion = \"{LINFA_VERSION}\"");
    assert!(lock.contains(&entry), "Cargo.lock has no {entry}");
}

/// A service's data directory: the small fleet learned by two workers'
/// engines under a generated key, checkpointed as `warden run` does.
fn data_dir(dir: &Path) -> (PathBuf, crate::state::hash_key::HashKey) {
    let data = fleet_file(dir, 3);
    let key = crate::state::hash_key::HashKey::generate();
    let mut cfg = Config::default();
    cfg.detector.hash_key = key.to_hex();
    let mut engines = [
        crate::engine::Engine::new(&cfg),
        crate::engine::Engine::new(&cfg),
    ];
    let text = std::fs::read_to_string(&data).expect("read");
    for line in text.lines() {
        let crate::event::Event::ToolCall(call) =
            crate::ingest::decode::decode_str(line).expect("decodes")
        else {
            continue;
        };
        let e = &mut engines[call.agent_id.len() % 2];
        let ev = e.evaluate(&call, crate::engine::Phase::Train);
        e.commit(ev);
    }
    let out = dir.join("warden-data");
    std::fs::create_dir_all(&out).expect("mkdir");
    for (i, e) in engines.iter_mut().enumerate() {
        e.close_all();
        let cp = crate::state::Checkpoint::of(e, Vec::new());
        crate::state::write_atomic(
            &crate::state::worker_path(&out, i),
            &crate::state::encode(&cp),
        )
        .expect("write checkpoint");
    }
    std::fs::write(out.join(crate::state::hash_key::KEY_FILE), key.to_hex()).expect("key");
    (out, key)
}

#[test]
fn retrains_peer_groups_from_a_deployments_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = data_dir(dir.path());
    let cfg = Config::default();
    let p = super::source::from_checkpoint(&out, &cfg).expect("reads the checkpoints");
    assert_eq!(p.agents.len(), 6);
    assert_eq!(p.inputs.len(), 2);
    let model = super::train::train_on_profiles(p.agents, p.inputs, p.digest, &cfg)
        .expect("trains on profiles");
    assert_eq!(model.training.agents, 6);
    assert_eq!(model.training.tool_calls, 3 * 40 * 4 + 3 * 40 * 8);
    assert!(model.training.inputs[0].ends_with("profiles-0.ckpt"));
    // Readers and writers do not share a group, as from the events.
    for g in &model.groups {
        let kinds: std::collections::BTreeSet<&str> = g
            .members
            .iter()
            .map(|m| m.split('-').next().unwrap())
            .collect();
        assert_eq!(kinds.len(), 1, "{:?}", g.members);
        // Profiles hold no sessions to model.
        assert!(g.session_model.is_none() && g.prior.profile.is_none());
        assert!(g.prior.new_value_rate > 0.0);
    }
    // The file saves and loads like any other.
    let path = dir.path().join("fleet.json");
    model.save(&path).expect("saves");
    ModelFile::load(&path).expect("loads");

    // Without the key, or under another, or with no checkpoint: named.
    std::fs::remove_file(out.join(crate::state::hash_key::KEY_FILE)).expect("rm");
    let e = super::source::from_checkpoint(&out, &cfg)
        .err()
        .expect("no key")
        .to_string();
    assert!(
        e.contains("hash.key") && e.contains("WARDEN_HASH_KEY"),
        "{e}"
    );
    let mut other = Config::default();
    other.detector.hash_key = crate::state::hash_key::HashKey::generate().to_hex();
    let e = super::source::from_checkpoint(&out, &other)
        .err()
        .expect("other key")
        .to_string();
    assert!(e.contains("profiles-"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let e = super::source::from_checkpoint(&empty, &other)
        .err()
        .expect("none")
        .to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}

use super::*;

fn config() -> crate::config::Config {
    crate::config::Config::default()
}

#[test]
fn text_format_names_counters_as_their_samples() {
    let m = Metrics::for_service(&config(), 2);
    m.events
        .get_or_create(&KindLabel { kind: "tool_call" })
        .inc();
    let text = m.render();
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE warden_events_total counter\n"),
        "{text}"
    );
    assert!(text.contains("# HELP warden_events_total "), "{text}");
    assert!(
        text.contains("warden_events_total{kind=\"tool_call\"} 1\n"),
        "{text}"
    );
    // Every TYPE names the samples that follow it.
    let mut family = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap().to_owned();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let ok = name == family
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str()));
            assert!(ok, "sample {name} under TYPE {family}");
        }
    }
}

#[test]
fn every_family_has_a_sample_from_start() {
    let m = Metrics::for_service(&config(), 2);
    let text = m.render();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for expected in [
        "warden_events_total",
        "warden_rejected_total",
        "warden_decisions_total",
        "warden_checkpoints_total",
        "warden_quarantines_opened_total",
        "warden_quarantines_open",
        "warden_revocation_attempts_total",
        "warden_decision_score",
        "warden_decisions_by_class_total",
        "warden_event_time_lag_seconds",
        "warden_checkpoint_age_seconds",
        "warden_checkpoint_seconds",
        "warden_profile_bytes",
        "warden_suppressed_calls_total",
        "warden_incidents_opened_by_class_total",
    ] {
        assert!(
            families.contains(&expected),
            "{expected} missing: {families:?}"
        );
    }
    for f in families {
        let has_sample = text
            .lines()
            .any(|l| !l.starts_with('#') && l.starts_with(f));
        // Families keyed by a notifier or a Kafka partition exist only
        // once one is configured or assigned.
        let optional = [
            "warden_alert",
            "warden_alerts",
            "warden_kafka_consumer_lag",
            "warden_flagged_calls_by_agent",
        ]
        .iter()
        .any(|o| f.starts_with(o));
        assert!(
            has_sample || optional,
            "{f} has no sample at start:\n{text}"
        );
    }
    assert!(text.contains("warden_decisions_total{flagged=\"true\"} 0\n"));
    assert!(text.contains(
        "warden_revocation_attempts_total{destination=\"local-log\",outcome=\"refused\"} 0\n"
    ));
    assert!(text.contains("warden_checkpoint_age_seconds "));
}

#[test]
fn openmetrics_only_when_asked() {
    let m = Metrics::default();
    let (ct, body) = m.negotiate(Some(
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ));
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE warden_events counter\n"));
    let (ct, body) = m.negotiate(Some("text/plain"));
    assert_eq!(ct, TEXT_CONTENT_TYPE);
    assert!(!body.contains("# EOF"));
    let (ct, _) = m.negotiate(None);
    assert_eq!(ct, TEXT_CONTENT_TYPE);
    let (ct, _) = m.negotiate(Some("application/openmetrics-text; q=0, text/plain"));
    assert_eq!(ct, TEXT_CONTENT_TYPE);
}

#[test]
fn atomic_histogram_counts_into_cumulative_buckets() {
    let h = AtomicHistogram::new([1.0, 10.0].into_iter());
    for v in [0.5, 1.0, 5.0, 50.0] {
        h.observe(v);
    }
    assert_eq!(h.count(), 4);
    let mut r = Registry::default();
    r.register("h", "h", h.clone());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    assert!(out.contains("h_bucket{le=\"1.0\"} 2\n"), "{out}");
    assert!(out.contains("h_bucket{le=\"10.0\"} 3\n"), "{out}");
    assert!(out.contains("h_bucket{le=\"+Inf\"} 4\n"), "{out}");
    assert!(out.contains("h_sum 56.5\n"), "{out}");
}

#[test]
fn flagged_agents_beyond_the_cap_share_one_label() {
    let m = Metrics::default();
    for i in 0..FLAGGED_AGENT_LABELS + 10 {
        m.flagged_agent_counter(&format!("a{i}")).inc();
    }
    let text = m.render();
    assert!(text.contains("warden_flagged_calls_by_agent_total{agent_id=\"other\"} 10\n"));
    assert_eq!(
        text.matches("warden_flagged_calls_by_agent_total{").count(),
        FLAGGED_AGENT_LABELS + 1
    );
}

#[test]
fn binding_counters_are_present_at_zero_with_help() {
    let m = Metrics::default();
    let text = m.render();
    for name in [
        "warden_binding_abstained_total",
        "warden_owner_contradictions_total",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        assert!(text.contains(&format!("# TYPE {name} counter")), "{text}");
        assert!(text.contains(&format!("\n{name} 0\n")), "{text}");
    }
    m.binding_abstained.inc_by(3);
    assert!(m.render().contains("\nwarden_binding_abstained_total 3\n"));
}

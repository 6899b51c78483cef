//! DevOps / CI bot: pipelines, pull requests, deploys and pods.

use super::*;

pub(super) static DEVOPS: &[Task] = &[
    task(
        "check-ci",
        3.0,
        Avail::Essential,
        &["get_pipeline", "get_logs"],
        ops_ci_check,
    ),
    task(
        "release",
        2.0,
        Avail::Always,
        &[
            "get_pr",
            "run_pipeline",
            "get_pipeline",
            "merge_pr",
            "deploy_service",
            "post_message",
        ],
        ops_release,
    ),
    task(
        "restart-crashing-pod",
        1.2,
        Avail::Always,
        &["get_logs", "list_pods", "restart_pod"],
        ops_incident,
    ),
    task(
        "rollback",
        0.6,
        Avail::Always,
        &["get_logs", "rollback_service", "post_message"],
        ops_rollback,
    ),
    task(
        "scale",
        1.0,
        Avail::Always,
        &["list_pods", "scale_service"],
        ops_scale,
    ),
    task(
        "dependency-bump",
        1.2,
        Avail::Always,
        &["create_pr", "run_pipeline", "get_pipeline"],
        ops_bump,
    ),
    task(
        "config-deploy",
        1.2,
        Avail::Only(&[Flavor::SecretsDeploy]),
        &["read_secret", "deploy_service"],
        ops_config_deploy,
    ),
    task(
        "branch-cleanup",
        0.5,
        Avail::Always,
        &["get_pr", "delete_branch"],
        ops_branch_cleanup,
    ),
    task(
        "watch-deploy",
        1.0,
        Avail::Rollout,
        &["get_deploy_status", "get_logs"],
        ops_watch_deploy,
    ),
    task(
        "capacity-review",
        1.0,
        Avail::Novel,
        &["list_pods", "get_logs", "scale_service"],
        ops_capacity,
    ),
    task(
        "rerun-flaky",
        1.0,
        Avail::Novel,
        &["get_pipeline", "run_pipeline", "get_logs"],
        ops_rerun,
    ),
];

fn get_pipeline(ctx: &mut Ctx, svc: &str) -> Call {
    let status = ctx.pick(&["passed", "passed", "passed", "failed", "running"]);
    pipeline_status(ctx, svc, status)
}

fn pipeline_status(ctx: &mut Ctx, svc: &str, status: &str) -> Call {
    let run = ctx.n(1000, 9999);
    let p = format!("{svc}/main");
    Call::new(
        "get_pipeline",
        "pipeline",
        p.clone(),
        "read",
        json!({ "pipeline": p, "run": run }),
    )
    .out(format!("run #{run} {status} in {}m", ctx.n(3, 25)), vec![])
}

fn run_pipeline(svc: &str, git_ref: &str) -> Call {
    let p = format!("{svc}/main");
    Call::new(
        "run_pipeline",
        "pipeline",
        p.clone(),
        "execute",
        json!({ "pipeline": p, "ref": git_ref }),
    )
}

pub(crate) fn get_logs(ctx: &mut Ctx, svc: &str) -> Call {
    let n = ctx.n(0, 40);
    let dep = ctx.pick(&["postgres", "redis", "auth-service", "s3", "kafka"]);
    Call::new(
        "get_logs",
        "service",
        svc,
        "read",
        json!({ "service": svc, "since": "30m", "level": "error" }),
    )
    .out(format!("{n} errors; e.g. 'timeout calling {dep}'"), vec![])
}

pub(crate) fn get_pr(ctx: &mut Ctx, repo: &str, num: u32) -> Call {
    let dev = ctx.agent.colleague(ctx.rng);
    Call::new(
        "get_pr",
        "pull_request",
        format!("{repo}#{num}"),
        "read",
        json!({ "repo": repo, "number": num }),
    )
    .out(
        format!("PR #{num} by {}: approved, checks pending", dev.email),
        vec![dev.email],
    )
}

pub(crate) fn merge_pr(repo: &str, num: u32) -> Call {
    Call::new(
        "merge_pr",
        "pull_request",
        format!("{repo}#{num}"),
        "write",
        json!({ "repo": repo, "number": num, "method": "squash" }),
    )
}

pub(crate) fn deploy_service(ctx: &mut Ctx, svc: &str) -> Call {
    let v = format!("v1.{}.{}", ctx.n(10, 60), ctx.n(0, 20));
    Call::new(
        "deploy_service",
        "service",
        svc,
        "execute",
        json!({ "service": svc, "version": v, "env": "prod" }),
    )
}

fn list_pods(ctx: &mut Ctx, svc: &str) -> Call {
    let pod = format!("{svc}-{}-{}", alnum(ctx.rng, 9), alnum(ctx.rng, 5));
    Call::new(
        "list_pods",
        "namespace",
        format!("prod/{svc}"),
        "read",
        json!({ "namespace": "prod", "selector": format!("app={svc}") }),
    )
    .out(
        format!("{} pods; {pod} CrashLoopBackOff", ctx.n(2, 12)),
        vec![pod],
    )
}

pub(crate) fn read_secret(path: &str) -> Call {
    Call::new(
        "read_secret",
        "secret",
        path,
        "read",
        json!({ "path": path, "version": "latest" }),
    )
    .out(format!("{path}: 1 key (value redacted)"), vec![])
}

pub(crate) fn delete_branch(repo: &str, branch: &str) -> Call {
    Call::new(
        "delete_branch",
        "branch",
        format!("{repo}:{branch}"),
        "delete",
        json!({ "repo": repo, "branch": branch }),
    )
}

fn ops_ci_check(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(format!("Why is {svc} CI red?"), vec![svc.clone()]);
    b.push(get_pipeline(ctx, &svc));
    b.push(get_logs(ctx, &svc));
    b
}

fn ops_release(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let repo = ctx.repo(&svc);
    let num = ctx.n(100, 2500);
    let mut b = Built::new(
        format!("Ship {repo}#{num} to prod"),
        vec![format!("{repo}#{num}")],
    );
    b.push(get_pr(ctx, &repo, num));
    b.push(run_pipeline(&svc, &format!("pull/{num}")));
    // The bot only merges green builds.
    b.push(pipeline_status(ctx, &svc, "passed"));
    b.push(merge_pr(&repo, num));
    b.push(deploy_service(ctx, &svc));
    b.push(post_message("#deploys", &format!("{svc} deployed to prod")));
    b
}

fn ops_incident(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(
        format!("{svc} is throwing 5xx, take a look"),
        vec![svc.clone()],
    );
    b.push(get_logs(ctx, &svc));
    let l = list_pods(ctx, &svc);
    let pod = l
        .output
        .as_ref()
        .and_then(|o| o.entities.first().cloned())
        .unwrap_or_default();
    b.push(l);
    b.push(Call::new(
        "restart_pod",
        "pod",
        pod.clone(),
        "execute",
        json!({ "pod": pod, "namespace": "prod" }),
    ));
    b
}

fn ops_rollback(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(
        format!("Roll back {svc}, the last deploy broke checkout"),
        vec![svc.clone()],
    );
    b.push(get_logs(ctx, &svc));
    let v = format!("v1.{}.{}", ctx.n(10, 60), ctx.n(0, 20));
    b.push(Call::new(
        "rollback_service",
        "service",
        svc.clone(),
        "execute",
        json!({ "service": svc, "to_version": v, "env": "prod" }),
    ));
    b.push(post_message(
        "#incidents",
        &format!("{svc} rolled back to {v}"),
    ));
    b
}

fn ops_scale(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(
        format!("Scale {svc} for the traffic spike"),
        vec![svc.clone()],
    );
    b.push(list_pods(ctx, &svc));
    let n = ctx.n(3, 12);
    b.push(Call::new(
        "scale_service",
        "service",
        svc.clone(),
        "write",
        json!({ "service": svc, "replicas": n }),
    ));
    b
}

fn ops_bump(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let repo = ctx.repo(&svc);
    let dep = ctx.pick(&["serde", "tokio", "openssl", "react", "lodash", "grpc"]);
    let branch = format!("deps/bump-{dep}");
    let mut b = Built::new(format!("Bump {dep} in {repo}"), vec![repo.clone()]);
    let num = ctx.n(100, 2500);
    b.push(
        Call::new(
            "create_pr",
            "pull_request",
            repo.clone(),
            "write",
            json!({ "repo": repo, "branch": branch, "title": format!("Bump {dep}") }),
        )
        .out(format!("Opened #{num}"), vec![format!("{repo}#{num}")]),
    );
    b.push(run_pipeline(&svc, &branch));
    b.push(get_pipeline(ctx, &svc));
    b
}

fn ops_config_deploy(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(
        format!("Roll the new DB config for {svc}"),
        vec![svc.clone()],
    );
    b.push(read_secret(&format!("kv/prod/{svc}/db")));
    b.push(deploy_service(ctx, &svc));
    b
}

fn ops_branch_cleanup(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let repo = ctx.repo(&svc);
    let num = ctx.n(100, 2500);
    let mut b = Built::new(
        format!("Clean up merged branches of {repo}#{num}"),
        vec![format!("{repo}#{num}")],
    );
    b.push(get_pr(ctx, &repo, num));
    for _ in 0..ctx.n(1, 3) {
        let br = format!("feature/{}", hex(ctx.rng, 6));
        b.push(delete_branch(&repo, &br));
    }
    b
}

fn ops_watch_deploy(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(format!("Watch the {svc} rollout"), vec![svc.clone()]);
    for _ in 0..ctx.n(1, 3) {
        let pct = ctx.n(10, 100);
        b.push(
            Call::new(
                "get_deploy_status",
                "service",
                svc.clone(),
                "read",
                json!({ "service": svc, "env": "prod" }),
            )
            .out(format!("rollout {pct}% healthy"), vec![]),
        );
    }
    b.push(get_logs(ctx, &svc));
    b
}

fn ops_capacity(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(
        format!("Capacity review for {svc} before the sale"),
        vec![svc.clone()],
    );
    b.push(list_pods(ctx, &svc));
    b.push(get_logs(ctx, &svc));
    let n = ctx.n(4, 16);
    b.push(Call::new(
        "scale_service",
        "service",
        svc.clone(),
        "write",
        json!({ "service": svc, "replicas": n }),
    ));
    b
}

fn ops_rerun(ctx: &mut Ctx) -> Built {
    let svc = ctx.service();
    let mut b = Built::new(
        format!("Re-run the flaky {svc} pipeline and grab logs"),
        vec![svc.clone()],
    );
    b.push(get_pipeline(ctx, &svc));
    b.push(run_pipeline(&svc, "main"));
    b.push(get_logs(ctx, &svc));
    b
}

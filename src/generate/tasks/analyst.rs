//! SQL data analyst: queries, extracts and dashboards.

use super::*;

pub(super) static ANALYST: &[Task] = &[
    task(
        "ad-hoc-query",
        3.0,
        Avail::Essential,
        &["run_query"],
        an_adhoc,
    ),
    task(
        "explore-tables",
        1.5,
        Avail::Always,
        &["list_tables", "describe_table", "run_query"],
        an_explore,
    ),
    task(
        "weekly-report",
        1.2,
        Avail::Always,
        &["run_query", "export_csv", "send_email"],
        an_report,
    ),
    task(
        "build-dashboard",
        0.8,
        Avail::Always,
        &["run_query", "create_dashboard", "share_dashboard"],
        an_dashboard,
    ),
    task(
        "refresh-extract",
        1.2,
        Avail::Always,
        &["run_query", "export_csv"],
        an_refresh,
    ),
    burst(
        "deep-dive",
        0.15,
        Avail::Always,
        &["run_query"],
        an_deep_dive,
    ),
    task(
        "explore-new-schema",
        1.0,
        Avail::Novel,
        &["list_tables", "describe_table"],
        an_new_schema,
    ),
    task(
        "data-quality-check",
        1.0,
        Avail::Novel,
        &["describe_table", "run_query", "share_dashboard"],
        an_quality,
    ),
];

fn sql(ctx: &mut Ctx, table: &str) -> String {
    let d = ctx.date(-30);
    match ctx.n(0, 3) {
        0 => format!("SELECT date_trunc('week', created_at) w, count(*) FROM {table} WHERE created_at > '{d}' GROUP BY 1"),
        1 => format!("SELECT region, sum(amount) FROM {table} GROUP BY region ORDER BY 2 DESC LIMIT 20"),
        2 => format!("SELECT * FROM {table} WHERE status = 'failed' LIMIT 100"),
        _ => format!("SELECT count(DISTINCT user_id) FROM {table} WHERE day >= '{d}'"),
    }
}

pub(crate) fn run_query(ctx: &mut Ctx, table: &str) -> Call {
    let q = sql(ctx, table);
    query_call(ctx, table, &q)
}

pub(crate) fn query_call(ctx: &mut Ctx, table: &str, q: &str) -> Call {
    let rows = ctx.n(1, 5000);
    let region = ctx.pick(&["EMEA", "NA", "APAC", "LATAM"]);
    Call::new(
        "run_query",
        "db_table",
        table,
        "read",
        json!({ "sql": q, "warehouse": "analytics" }),
    )
    .out(
        format!(
            "{rows} rows; first: {region} | {} | +{}%",
            ctx.n(100, 99_999),
            ctx.n(0, 30)
        ),
        vec![],
    )
}

pub(crate) fn export_csv(ctx: &mut Ctx, table: &str, rows: u32) -> (Call, String) {
    let name = table.replace('.', "_");
    let path = format!(
        "s3://{}-analytics/exports/{name}-{}.csv",
        ctx.agent.org.domain.split('.').next().unwrap_or("org"),
        ctx.date(0)
    );
    let call = Call::new(
        "export_csv",
        "file",
        path.clone(),
        "write",
        json!({ "source_table": table, "rows": rows, "destination": path }),
    )
    .out(format!("Exported {rows} rows"), vec![path.clone()]);
    (call, path)
}

pub(crate) fn share_dashboard(dash: &str, recipients: &[String]) -> Call {
    Call::new(
        "share_dashboard",
        "dashboard",
        dash,
        "write",
        json!({ "dashboard": dash, "recipients": recipients, "permission": "view" }),
    )
}

fn describe_table(ctx: &mut Ctx, t: &str) -> Call {
    Call::new(
        "describe_table",
        "db_table",
        t,
        "read",
        json!({ "table": t }),
    )
    .out(
        format!("{t}: {} columns, ~{}k rows", ctx.n(5, 40), ctx.n(10, 9000)),
        vec![],
    )
}

fn list_tables(schema: &str, tables: &[String]) -> Call {
    let names: Vec<&str> = tables.iter().filter_map(|t| t.split('.').nth(1)).collect();
    Call::new(
        "list_tables",
        "db_schema",
        schema,
        "read",
        json!({ "schema": schema }),
    )
    .out(
        format!("{} tables: {}", names.len(), names.join(", ")),
        vec![],
    )
}

fn an_adhoc(ctx: &mut Ctx) -> Built {
    let t = ctx.table();
    let mut b = Built::new(format!("Quick numbers from {t}"), vec![t.clone()]);
    for _ in 0..ctx.n(1, 4) {
        b.push(run_query(ctx, &t));
    }
    b
}

fn an_explore(ctx: &mut Ctx) -> Built {
    let t = ctx.table();
    let schema = t.split('.').next().unwrap_or("sales").to_string();
    let in_schema: Vec<String> = ctx
        .agent
        .tables
        .iter()
        .filter(|x| x.starts_with(&format!("{schema}.")))
        .cloned()
        .collect();
    let mut b = Built::new(
        format!("What's in the {schema} schema? Start with {t}"),
        vec![schema.clone()],
    );
    b.push(list_tables(&schema, &in_schema));
    b.push(describe_table(ctx, &t));
    if ctx.chance(0.4) {
        let u = ctx.table();
        b.push(describe_table(ctx, &u));
    }
    for _ in 0..ctx.n(1, 3) {
        b.push(run_query(ctx, &t));
    }
    b
}

fn an_report(ctx: &mut Ctx) -> Built {
    let t = ctx.table();
    let to = ctx.agent.contact(ctx.rng);
    let mut b = Built::new(format!("Weekly {t} report to {}", to.first()), vec![]);
    for _ in 0..ctx.n(1, 2) {
        b.push(run_query(ctx, &t));
    }
    let rows = ctx.n(20, 2000);
    let (e, path) = export_csv(ctx, &t, rows);
    b.push(e);
    let file = path.rsplit('/').next().unwrap_or("report.csv").to_string();
    b.push(send_email(
        from_ref(&to.email),
        &format!("Weekly report: {t}"),
        &[file],
    ));
    b
}

fn an_dashboard(ctx: &mut Ctx) -> Built {
    let t = ctx.table();
    let dash = format!("dash-{}", hex(ctx.rng, 6));
    let mut b = Built::new(
        format!("Make a dashboard on {t} for the team"),
        vec![t.clone()],
    );
    b.push(run_query(ctx, &t));
    b.push(
        Call::new(
            "create_dashboard",
            "dashboard",
            dash.clone(),
            "write",
            json!({ "title": format!("{t} overview"), "queries": ctx.n(2, 6) }),
        )
        .out(format!("Created {dash}"), vec![dash.clone()]),
    );
    let people: Vec<String> = (0..ctx.n(1, 3))
        .map(|_| ctx.agent.colleague(ctx.rng).email)
        .collect();
    b.push(share_dashboard(&dash, &people));
    b
}

fn an_refresh(ctx: &mut Ctx) -> Built {
    let t = ctx.table();
    let mut b = Built::new(format!("Refresh the {t} extract"), vec![t.clone()]);
    b.push(run_query(ctx, &t));
    let rows = ctx.n(100, 50_000);
    let (e, _) = export_csv(ctx, &t, rows);
    b.push(e);
    b
}

fn an_deep_dive(ctx: &mut Ctx) -> Built {
    let mut b = Built::new("Deep dive: why did conversion drop last week?", vec![]);
    for _ in 0..ctx.n(15, 30) {
        let t = ctx.table();
        b.push(run_query(ctx, &t));
    }
    b
}

fn an_new_schema(ctx: &mut Ctx) -> Built {
    let (schema, tables) = ctx.pick(NEW_SCHEMAS);
    let full: Vec<String> = tables.iter().map(|t| format!("{schema}.{t}")).collect();
    let mut b = Built::new(
        format!("The {schema} schema just landed; what's in it?"),
        vec![schema.to_string()],
    );
    b.push(list_tables(schema, &full));
    for t in full.iter().take(ctx.n(3, 5) as usize) {
        b.push(describe_table(ctx, t));
    }
    b
}

fn an_quality(ctx: &mut Ctx) -> Built {
    let t = ctx.table();
    let mut b = Built::new(
        format!("Check {t} for nulls and dupes, share results"),
        vec![t.clone()],
    );
    b.push(describe_table(ctx, &t));
    let q = format!(
        "SELECT count(*) - count(DISTINCT id), sum(CASE WHEN id IS NULL THEN 1 END) FROM {t}"
    );
    b.push(query_call(ctx, &t, &q));
    let dash = format!("dash-{}", hex(ctx.rng, 6));
    let people: Vec<String> = (0..ctx.n(1, 2))
        .map(|_| ctx.agent.colleague(ctx.rng).email)
        .collect();
    b.push(share_dashboard(&dash, &people));
    b
}

//! The OpenAPI 3.1 document of the admin listener, built from one table of
//! routes; `tests/admin.rs` checks it against the routers' source and the
//! running service.

use serde_json::{json, Map, Value};

/// A documented route: method, path (OpenAPI `{param}` syntax), role
/// needed (`none`, `read`, `admin`), summary.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub role: &'static str,
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    role: &'static str,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        role,
        summary,
    }
}

/// Every route of the admin listener.
pub const ROUTES: &[Route] = &[
    r("get", "/live", "none", "The process is up."),
    r("get", "/ready", "none", "Profiles restored and workers running (503 before)."),
    r("get", "/metrics", "read", "Prometheus text 0.0.4, or OpenMetrics when Accept asks for it."),
    r("get", "/openapi.json", "read", "This document."),
    r("get", "/v1/quarantines", "read", "Quarantines, newest first (?state=, ?limit=)."),
    r("get", "/v1/quarantines/{id}", "read", "One quarantine with its decision, reasons, revocations and alerts."),
    r("get", "/v1/quarantines/agents/{agent_id}", "read", "Whether a broker may mint this agent a credential."),
    r("post", "/v1/quarantines/{id}/release", "admin", "Release a quarantine: {actor, reason, false_positive}."),
    r("get", "/v1/agents/{agent_id}/explain", "read", "The agent's profile in human terms, threshold and mode with their sources, its last decisions (?decisions=N)."),
    r("get", "/v1/policy", "read", "Configured policy and the live overrides."),
    r("put", "/v1/policy/default", "admin", "Set the default threshold and/or mode: {threshold_bits, mode, actor, reason}."),
    r("delete", "/v1/policy/default", "admin", "Clear the default override: {actor, reason}."),
    r("put", "/v1/policy/classes/{class}", "admin", "Set a class override (config class name or agent-id pattern with *)."),
    r("delete", "/v1/policy/classes/{class}", "admin", "Clear a class override: {actor, reason}."),
    r("put", "/v1/policy/agents/{agent_id}", "admin", "Set an agent override."),
    r("delete", "/v1/policy/agents/{agent_id}", "admin", "Clear an agent override: {actor, reason}."),
    r("get", "/v1/suppressions", "read", "Suppression rules with their hit counts and whether they expired."),
    r("post", "/v1/suppressions", "admin", "Add a rule: {agent, tool, resource, signal, skip, reason, actor, expires_at | expires_in}."),
    r("delete", "/v1/suppressions/{id}", "admin", "Remove a rule: {actor, reason}."),
    r("post", "/v1/feedback", "admin", "Label an incident or decision: {incident | event_id, verdict, actor, note}."),
    r("get", "/v1/feedback", "read", "Labelled examples as JSON Lines (warden replay --labels format)."),
];

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "x-warden-role": route.role,
            "responses": {
                "200": {"description": "OK"},
                "400": {"$ref": "#/components/responses/Invalid"},
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "403": {"$ref": "#/components/responses/Forbidden"},
            },
        });
        if route.role == "none" {
            op["security"] = json!([]);
        }
        if route.method == "put" && route.path.starts_with("/v1/policy/") {
            op["responses"]["409"] = json!({"$ref": "#/components/responses/Conflict"});
        }
        if matches!(route.method, "put" | "post" | "delete") {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"type": "object"}}},
            });
        }
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Warden admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The admin listener (server.admin-listen). Roles: read (WARDEN_READ_TOKEN), admin (WARDEN_ADMIN_TOKEN); x-warden-role names the one each operation needs.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": "string", "description": "The body field at fault."},
                        "required_role": {"type": "string"},
                    },
                },
            },
            "responses": {
                "Invalid": {"description": "Invalid request; `field` names the field.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Unauthorized": {"description": "No token, or an unknown one.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Conflict": {"description": "Not possible in this deployment: enforce with no revoker configured, or with HTTP ingest open off loopback; `field` is `mode`. The attempt is audited (`policy_refused`).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Forbidden": {"description": "A token of another role.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        },
    })
}

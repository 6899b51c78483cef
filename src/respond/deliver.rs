//! Outbound HTTP: what an answer means (done, worth a retry, refused) for
//! every destination, and the notifier posts (Slack, PagerDuty). The
//! revokers live in [`super::revoke`], one module per system; every call
//! out is retried by the one policy in [`super::retry`].

use reqwest::StatusCode;

pub use super::retry::{retry, Attempt, Delivered, RetryPolicy};
pub use super::revoke::Revoker;

/// A short, single-line excerpt of a response body for errors and logs.
pub(crate) fn excerpt(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_owned()
}

/// What a transport error means: a timeout or refused connection is worth
/// another try. The URL is stripped: a Slack webhook URL is a secret, and
/// the error is logged, stored and audited.
fn transport(e: reqwest::Error) -> Attempt {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Attempt::Retry {
        error: format!("{what}: {e}"),
        after: None,
    }
}

/// Statuses worth retrying for every destination: throttling and server
/// trouble. Vault adds its standby statuses.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The outcome of one call: `ok` statuses are done; throttling, server
/// trouble and `also_retry` are retried (after `Retry-After` when given);
/// anything else is refused. `describe` reads the destination's own error
/// shape from the body; otherwise the error quotes an excerpt of it.
pub(crate) async fn classify(
    resp: Result<reqwest::Response, reqwest::Error>,
    ok: impl Fn(StatusCode) -> bool,
    also_retry: &[u16],
    describe: fn(&str) -> Option<String>,
) -> Attempt {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return transport(e),
    };
    let status = resp.status();
    if ok(status) {
        return Attempt::Done;
    }
    let after = super::retry::retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let what = describe(&body).map_or_else(|| excerpt(&body), |d| excerpt(&d));
    let error = format!("HTTP {} {what}", status.as_u16());
    if retryable(status) || also_retry.contains(&status.as_u16()) {
        Attempt::Retry { error, after }
    } else {
        Attempt::Refused(error)
    }
}

/// No error shape of its own: the body's excerpt says it.
fn as_is(_: &str) -> Option<String> {
    None
}

/// Posts a message to Slack's incoming webhook: 200 is delivered; 429
/// and 5xx are retried (honouring `Retry-After`); other 4xx (invalid
/// payload, archived channel, revoked webhook) are refused. The URL is a
/// secret: no error quotes it.
pub async fn post_slack(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Attempt {
    classify(
        http.post(url).json(body).send().await,
        |s| s == StatusCode::OK,
        &[],
        as_is,
    )
    .await
    .scrubbed(&[url, url_path(url)])
}

/// The path of `url` (without its leading `/`), when long enough to be
/// worth scrubbing on its own: a server may quote only that.
fn url_path(url: &str) -> &str {
    let path = url.splitn(4, '/').nth(3).unwrap_or_default();
    if path.len() >= 8 {
        path
    } else {
        ""
    }
}

/// Sends an event to PagerDuty Events API v2: 202 is accepted; 400 is a
/// malformed event (refused, logged with PagerDuty's message); 429 and
/// 5xx are retried. The routing key is scrubbed from any error.
pub async fn post_pagerduty(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Attempt {
    let routing_key = body["routing_key"].as_str().unwrap_or_default();
    classify(
        http.post(url).json(body).send().await,
        |s| s == StatusCode::ACCEPTED,
        &[],
        super::alert::pagerduty::describe_error,
    )
    .await
    .scrubbed(&[routing_key])
}

//! A team's service seen from a desktop: the HTTP client of `spamscope serve`'s routes,
//! the local copy of the team's model versions, and the outbox that keeps feedback
//! given offline until the service has it.
//!
//! - [`Client`]: blocking calls (ureq) with a bounded time each; every failure is a
//!   [`RemoteError`] of one line naming the route, and says whether trying again later
//!   can help (the service unreachable or overloaded) or not (refused).
//! - [`mirror`]: the service's versions installed in a local registry under their own
//!   numbers (each file checked against its manifest's SHA-256), its `ACTIVE` following
//!   the version the service answers with. The app scores on that local copy: the
//!   gauge stays instant, and it works on while the service is away.
//! - [`outbox::Outbox`]: feedback waits in SQLite and is sent oldest first with an
//!   `Idempotency-Key` per record; the service stores each key once, so a record whose
//!   answer was lost (or that is sent again after a crash) is not stored twice.

pub mod mirror;
pub mod outbox;

use crate::service::api;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error("server address {}: {why}", crate::util::text::quote(.url))]
    BadUrl { url: String, why: &'static str },
    #[error("{route}: cannot reach the server: {message}")]
    Unreachable { route: String, message: String },
    #[error("{route}: the server answered {status}: {message}")]
    Refused {
        route: String,
        status: u16,
        message: String,
    },
    #[error("{route}: the server's answer is not understood: {message}")]
    Protocol { route: String, message: String },
    #[error("{0}")]
    Local(String),
}

impl RemoteError {
    /// Whether trying again later can succeed: the server was unreachable, timed out,
    /// or answered 5xx / 429 / 408.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Unreachable { .. } => true,
            RemoteError::Refused { status, .. } => *status >= 500 || [408, 429].contains(status),
            _ => false,
        }
    }
}

/// The longest a call may take (a model file over a slow link included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read (a model file of a very large forest).
const MAX_ANSWER: u64 = 2 << 30;

/// The service at one address, with the caller's token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Checks a server address (`http://host:port` or `https://…`, no query) and returns
/// it without a trailing slash.
pub fn normalize_url(url: &str) -> Result<String, RemoteError> {
    let bad = |why| RemoteError::BadUrl {
        url: url.to_string(),
        why,
    };
    let u = url.trim().trim_end_matches('/');
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with(':') {
        return Err(bad("it names no host"));
    }
    if u.len() > 2048 {
        return Err(bad("it is longer than 2,048 characters"));
    }
    if rest.contains(['?', '#', ' ', '@']) || rest.chars().any(char::is_control) {
        return Err(bad(
            "it may hold a host, a port and a path, but no query, fragment, user or spaces",
        ));
    }
    Ok(u.to_string())
}

impl Client {
    pub fn new(url: &str, token: Option<String>) -> Result<Client, RemoteError> {
        let base = normalize_url(url)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(concat!("spamscope/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent: config.into(),
            base,
            token: token.filter(|t| !t.trim().is_empty()),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<(ureq::http::HeaderMap, Vec<u8>), RemoteError> {
        let route = format!("{method} {path}");
        let url = format!("{}{path}", self.base);
        let unreachable = |e: ureq::Error| RemoteError::Unreachable {
            route: route.clone(),
            message: e.to_string(),
        };
        let t = self.token.as_deref();
        let res = match (method, body) {
            ("GET", _) => headers(self.agent.get(&url), t, key).call(),
            ("DELETE", Some(b)) => headers(self.agent.delete(&url), t, key)
                .force_send_body()
                .send_json(b),
            ("DELETE", None) => headers(self.agent.delete(&url), t, key).call(),
            ("PUT", Some(b)) => headers(self.agent.put(&url), t, key).send_json(b),
            (_, Some(b)) => headers(self.agent.post(&url), t, key).send_json(b),
            (_, None) => headers(self.agent.post(&url), t, key).send_empty(),
        };
        let mut res = res.map_err(unreachable)?;
        let status = res.status().as_u16();
        let bytes = res
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(unreachable)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<api::ErrorBody>(&bytes)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| {
                    crate::util::text::clip(&String::from_utf8_lossy(&bytes)).to_string()
                });
            return Err(RemoteError::Refused {
                route,
                status,
                message,
            });
        }
        Ok((res.headers().clone(), bytes))
    }

    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<T, RemoteError> {
        let (_, bytes) = self.call(method, path, body, key)?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Protocol {
            route: format!("{method} {path}"),
            message: e.to_string(),
        })
    }

    pub fn health(&self) -> Result<api::Health, RemoteError> {
        self.json("GET", "/health", None, None)
    }

    pub fn versions(&self) -> Result<api::Versions, RemoteError> {
        self.json("GET", "/model/versions", None, None)
    }

    /// One file of version `v` (`manifest.ron`, `model.bin`, `holdout.bin`), checked
    /// against the checksum the server sends with it.
    pub fn version_file(&self, v: u32, name: &str) -> Result<Vec<u8>, RemoteError> {
        let path = format!("/model/versions/{v}/files/{name}");
        let (headers, bytes) = self.call("GET", &path, None, None)?;
        if let Some(sum) = headers
            .get("x-checksum-sha256")
            .and_then(|h| h.to_str().ok())
        {
            let actual = crate::util::hash::sha256_hex(&bytes);
            if actual != sum {
                return Err(RemoteError::Protocol {
                    route: format!("GET {path}"),
                    message: format!(
                        "the file arrived damaged (SHA-256 {actual}, the server sent {sum})"
                    ),
                });
            }
        }
        Ok(bytes)
    }

    /// Feedback on one account (`{"features", "label", "notes", "user_id"}`), sent with
    /// `key` so that sending it again stores it once.
    pub fn feedback(&self, body: &Value, key: &str) -> Result<api::FeedbackResponse, RemoteError> {
        self.json("POST", "/feedback", Some(body), Some(key))
    }

    pub fn feedback_stats(&self) -> Result<api::FeedbackStats, RemoteError> {
        self.json("GET", "/model/feedback/stats", None, None)
    }

    pub fn retrain(&self) -> Result<api::JobAccepted, RemoteError> {
        self.json("POST", "/model/retrain", None, None)
    }

    pub fn job(&self, id: u64) -> Result<api::Job, RemoteError> {
        self.json("GET", &format!("/jobs/{id}"), None, None)
    }

    /// Claims accounts for review for `ttl_seconds`.
    pub fn claim(
        &self,
        ids: &[String],
        ttl_seconds: u64,
    ) -> Result<api::ClaimResponse, RemoteError> {
        let body = serde_json::json!({ "user_ids": ids, "ttl_seconds": ttl_seconds });
        self.json("POST", "/review/claims", Some(&body), None)
    }

    /// Releases the caller's claims on accounts.
    pub fn release(&self, ids: &[String]) -> Result<api::ReleaseResponse, RemoteError> {
        let body = serde_json::json!({ "user_ids": ids });
        self.json("DELETE", "/review/claims", Some(&body), None)
    }

    /// Who claimed and who reviewed accounts (at most 1,000 ids).
    pub fn review_status(&self, ids: &[String]) -> Result<api::ReviewStatus, RemoteError> {
        let body = serde_json::json!({ "user_ids": ids });
        self.json("POST", "/review/status", Some(&body), None)
    }

    /// The running experiment and its numbers.
    pub fn experiment(&self) -> Result<api::ExperimentStatus, RemoteError> {
        self.json("GET", "/model/experiment", None, None)
    }

    /// Starts a shadow or canary experiment of version `v` beside the active one.
    pub fn start_experiment(
        &self,
        v: u32,
        mode: &str,
        share: Option<f64>,
    ) -> Result<api::ExperimentStatus, RemoteError> {
        let body = serde_json::json!({ "version": v, "mode": mode, "share": share });
        self.json("POST", "/model/experiment", Some(&body), None)
    }

    /// Stops the running experiment (its final numbers).
    pub fn stop_experiment(&self) -> Result<api::ExperimentStatus, RemoteError> {
        self.json("DELETE", "/model/experiment", None, None)
    }

    /// The kept decision policies.
    pub fn policies(&self) -> Result<api::PolicyList, RemoteError> {
        self.json("GET", "/policies", None, None)
    }

    /// Keeps `policy` as a draft by this token's name.
    pub fn draft_policy(
        &self,
        policy: &crate::eval::policy::Policy,
        note: &str,
    ) -> Result<api::PolicyDetail, RemoteError> {
        let body = serde_json::json!({
            "outcomes": policy.outcomes,
            "rules": policy.rules,
            "note": note,
        });
        self.json("POST", "/policies", Some(&body), None)
    }

    /// Publishes kept policy `n` (an admin token).
    pub fn publish_policy(&self, n: u32) -> Result<api::PolicyDetail, RemoteError> {
        let body = serde_json::json!({});
        self.json("POST", &format!("/policies/{n}/publish"), Some(&body), None)
    }

    /// Runs kept policy `n` in shadow (None: stops the shadow).
    pub fn shadow_policy(&self, n: Option<u32>) -> Result<api::ShadowStatus, RemoteError> {
        match n {
            Some(n) => {
                let body = serde_json::json!({});
                self.json("POST", &format!("/policies/{n}/shadow"), Some(&body), None)
            }
            None => self.json("DELETE", "/policies/shadow", None, None),
        }
    }

    /// The shadow policy and its numbers.
    pub fn shadow_status(&self) -> Result<api::ShadowStatus, RemoteError> {
        self.json("GET", "/policies/shadow", None, None)
    }

    /// Makes the experiment's candidate the active version.
    pub fn promote_experiment(&self) -> Result<api::ExperimentPromoted, RemoteError> {
        self.json(
            "POST",
            "/model/experiment/promote",
            Some(&serde_json::json!({})),
            None,
        )
    }

    /// The team's recent traffic (at most `limit` accounts, newest first).
    pub fn review_queue(&self, limit: usize) -> Result<api::TrafficQueue, RemoteError> {
        self.json("GET", &format!("/review/queue?limit={limit}"), None, None)
    }

    /// The accounts the team's live policy sent to review that nobody reviewed since
    /// (at most `limit`), most severe first, then highest score, with their rules.
    pub fn review_decisions(&self, limit: usize) -> Result<api::TrafficQueue, RemoteError> {
        self.json(
            "GET",
            &format!("/review/queue?limit={limit}&source=decisions"),
            None,
            None,
        )
    }

    /// The service's latest model comparison, if one was run.
    pub fn comparison(&self) -> Result<Option<crate::ops::compare::Saved>, RemoteError> {
        match self.json("GET", "/model/comparison", None, None) {
            Ok(c) => Ok(Some(c)),
            Err(RemoteError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps `c` as the service's latest comparison (an admin's token).
    pub fn put_comparison(&self, c: &crate::ops::compare::Saved) -> Result<String, RemoteError> {
        let body = serde_json::to_value(c).map_err(|e| RemoteError::Local(e.to_string()))?;
        self.json::<api::Message>("PUT", "/model/comparison", Some(&body), None)
            .map(|m| m.message)
    }

    pub fn rollback(&self, to: u32) -> Result<api::RollbackResponse, RemoteError> {
        self.json(
            "POST",
            "/model/rollback",
            Some(&serde_json::json!({ "to": to })),
            None,
        )
    }
}

fn headers<B>(
    mut req: ureq::RequestBuilder<B>,
    token: Option<&str>,
    key: Option<&str>,
) -> ureq::RequestBuilder<B> {
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req
}

/// The body of `POST /feedback` for one record: the account's values by column id
/// (missing values left out), its label, notes and user id.
pub fn feedback_body(r: &crate::store::feedback::NewFeedback) -> Value {
    let cat = crate::data::catalog::catalog();
    let features: serde_json::Map<String, Value> = cat
        .ids()
        .zip(&r.features)
        .filter(|(_, v)| !v.is_nan())
        .map(|(id, v)| (id.to_string(), serde_json::json!(v)))
        .collect();
    let mut body = serde_json::json!({
        "features": features,
        "label": r.true_label,
        "notes": r.notes,
    });
    if let Some(u) = &r.user_id {
        body["user_id"] = Value::String(u.to_string());
    }
    body
}

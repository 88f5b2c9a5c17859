//! The online-learning settings and where alerts go (the settings' webhook).

use super::poll::Msg;
use super::{JobKind, Notice, Workbench};
use crate::ops::settings::OnlineLearningConfig;

impl Workbench {
    /// Validates and saves online-learning settings.
    pub fn save_online(&mut self, cfg: OnlineLearningConfig) {
        if self.refused_on_team("online-learning settings are the team service's") {
            return;
        }
        let Some(registry) = self.registry.clone() else {
            return;
        };
        self.spawn(JobKind::Registry, move |ctx| match cfg.save(&registry) {
            Ok(()) => {
                ctx.send(Msg::Online(cfg));
                ctx.info("online-learning settings saved".into());
            }
            Err(e) => ctx.error(format!("settings not saved: {e}")),
        });
    }

    /// Sends alerts shown on screen to the webhook of the settings, if one is set:
    /// never waits (a background thread posts, retries, and drops what it cannot
    /// deliver); each kind at most once per de-duplication window.
    pub fn raise_alerts(&mut self, alerts: &[(crate::ops::alert::AlertKind, String)]) {
        let Some(w) = &self.webhook else { return };
        let version = self.active.as_ref().map(|a| a.manifest.version);
        for (kind, message) in alerts {
            w.send(crate::ops::alert::Alert {
                kind: *kind,
                message: message.clone(),
                version,
                details: serde_json::json!({ "source": "app" }),
            });
        }
    }

    /// Follows the settings' webhook URL: a new sender when it changes.
    pub(super) fn set_webhook(&mut self, url: Option<&str>) {
        if self.webhook.as_ref().map(|w| w.url()) == url {
            return;
        }
        self.webhook = match url {
            None => None,
            Some(u) => match crate::ops::alert::WebhookSender::to(u) {
                Ok(w) => Some(w),
                Err(e) => {
                    self.notices
                        .push(Notice::Error(format!("alerts webhook not used: {e}")));
                    None
                }
            },
        };
    }
}

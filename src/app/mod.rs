//! The desktop app (eframe/egui). It draws the [`Workbench`]'s state and sends it
//! commands; everything slow runs on the workbench's worker threads.

mod charts;
mod compare;
mod credentials;
mod evaluate;
mod explore;
mod gauge;
mod monitoring;
pub mod policies;
mod queue;
mod score;
mod settings;
mod team;
mod versions;

use crate::data::synth::SynthParams;
use crate::model::forest::ForestParams;
use crate::ops::train::TrainConfig;
use crate::workbench::{JobKind, Notice, Workbench, WorkbenchConfig};
use eframe::egui;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub use credentials::{Credentials, TokenHome};
pub use evaluate::EvaluatePanel;
pub use explore::ExplorePanel;
pub use queue::QueuePanel;
pub use score::ScorePanel;
pub use settings::SettingsPanel;
pub use versions::VersionsPanel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Tab {
    #[default]
    Score,
    Explore,
    Evaluate,
    Queue,
    Monitoring,
    Versions,
    Compare,
    Policies,
    Team,
    Settings,
}

/// What survives a restart (eframe persistence).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct UiState {
    pub tab: Tab,
    /// The last CSV opened (reloaded at start); None for the synthetic default data.
    pub dataset: Option<PathBuf>,
    pub score: score::ScoreState,
    pub explore: explore::ExploreState,
    pub evaluate: evaluate::EvaluateState,
    pub versions: versions::VersionsState,
    pub queue: queue::QueueState,
    /// The team's service the app works on (None: this computer's registry alone).
    pub server: Option<String>,
    /// The moderator name given to feedback on this computer (Settings).
    pub moderator: String,
}

/// What a file picked in the native dialog is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PickPurpose {
    Dataset,
    Queue,
    /// A folder for a report.
    ReportFolder,
}

/// How the app starts: where the registry is and what first-start trains.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// What the workbench starts with; its `dataset`, when set, is opened instead of
    /// the last one / the synthetic default.
    pub workbench: WorkbenchConfig,
    /// Restore UI state from eframe storage (off in tests).
    pub persist: bool,
    /// `--server URL`: work on this team's service (else the one remembered, if any).
    pub server: Option<String>,
    /// Where tokens for services are kept.
    pub credentials: Credentials,
}

impl AppConfig {
    /// The real app: default registry, full synthetic data, reference forest.
    pub fn standard() -> AppConfig {
        AppConfig {
            workbench: WorkbenchConfig {
                registry_root: crate::store::Registry::default_root(),
                dataset: None,
                synth: SynthParams::default(),
                train: TrainConfig {
                    params: ForestParams::default(),
                    ..Default::default()
                },
                remote: None,
                mlflow: match crate::ops::mlflow::Tracking::from_setting(None) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("warning: {e}; the app does not log to MLflow");
                        None
                    }
                },
            },
            persist: true,
            server: None,
            credentials: Credentials::standard(&crate::store::Registry::default_root()),
        }
    }
}

/// Frame-time statistics of the UI thread: the time to build each frame's UI, and
/// eframe's measure of the whole frame on the CPU (UI + tessellation + painting) of the
/// previous frame.
#[derive(Debug, Default)]
pub struct FrameStats {
    samples: std::collections::VecDeque<f64>,
    frame_cpu: std::collections::VecDeque<f64>,
    log: Option<(PathBuf, Instant)>,
}

impl FrameStats {
    const KEEP: usize = 1200;

    fn record(&mut self, ms: f64, frame_cpu_ms: Option<f64>, busy: bool) {
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        if let Some(c) = frame_cpu_ms {
            if self.frame_cpu.len() == Self::KEEP {
                self.frame_cpu.pop_front();
            }
            self.frame_cpu.push_back(c);
        }
        let due = self
            .log
            .as_ref()
            .is_some_and(|(_, last)| last.elapsed().as_secs_f64() >= 2.0);
        if due && let Some((path, last)) = self.log.clone() {
            let _ = last;
            self.log = Some((path.clone(), Instant::now()));
            let (p50, p99, max) = self.percentiles();
            let (c50, c99, cmax) = percentiles(&self.frame_cpu);
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*path)
            {
                let _ = writeln!(
                    f,
                    "frames={} ui_p50_ms={p50:.3} ui_p99_ms={p99:.3} ui_max_ms={max:.3} frame_cpu_p50_ms={c50:.3} frame_cpu_p99_ms={c99:.3} frame_cpu_max_ms={cmax:.3} busy={busy}",
                    self.samples.len()
                );
            }
            self.samples.clear();
            self.frame_cpu.clear();
        }
    }

    /// (p50, p99, max) of the UI build time in milliseconds over recent frames.
    pub fn percentiles(&self) -> (f64, f64, f64) {
        percentiles(&self.samples)
    }

    /// (p50, p99, max) of whole-frame CPU time in milliseconds over recent frames.
    pub fn frame_percentiles(&self) -> (f64, f64, f64) {
        percentiles(&self.frame_cpu)
    }
}

fn percentiles(samples: &std::collections::VecDeque<f64>) -> (f64, f64, f64) {
    match crate::eval::monitor::quantiles(samples.iter().copied(), &[0.5, 0.99, 1.0]) {
        Some(q) => (q[0], q[1], q[2]),
        None => (0.0, 0.0, 0.0),
    }
}

pub struct SpamscopeApp {
    pub workbench: Workbench,
    pub state: UiState,
    pub score: ScorePanel,
    pub explore: ExplorePanel,
    pub evaluate: EvaluatePanel,
    pub versions: VersionsPanel,
    pub settings: SettingsPanel,
    pub queue: QueuePanel,
    pub monitoring: monitoring::MonitoringPanel,
    pub compare: compare::ComparePanel,
    pub policies: policies::PoliciesPanel,
    /// Notices on screen (newest last), with when they arrived.
    notices: Vec<(Notice, Instant)>,
    pub frames: FrameStats,
    persist: bool,
    /// A file dialog running on its own thread.
    pending_dialog: Option<(PickPurpose, std::sync::mpsc::Receiver<Option<PathBuf>>)>,
    /// The "open by path" prompt, when shown.
    path_prompt: Option<String>,
    pub team: team::TeamPanel,
    /// How the workbench starts on this computer (a team's service changes its
    /// registry folder and adds the remote).
    base: WorkbenchConfig,
    credentials: Credentials,
    /// The "Connect to server" form, when shown.
    pub connect: Option<ConnectForm>,
    /// Where the token went (the keyring is asked on a thread).
    token_saved: Option<std::sync::mpsc::Receiver<Result<TokenHome, String>>>,
}

/// The "Connect to server" form.
#[derive(Debug, Clone, Default)]
pub struct ConnectForm {
    pub url: String,
    pub token: String,
    pub error: Option<String>,
}

/// The local copy of a team's service: `ROOT/servers/HOST_PORT-HASH`.
pub fn server_cache(root: &std::path::Path, url: &str) -> PathBuf {
    let host: String = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    let h = crate::util::hash::sha256_hex(url.as_bytes());
    root.join("servers").join(format!("{host}-{}", &h[..8]))
}

impl SpamscopeApp {
    pub fn new(cc: &eframe::CreationContext<'_>, config: AppConfig) -> SpamscopeApp {
        let mut state: UiState = if config.persist {
            cc.storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default()
        } else {
            UiState::default()
        };
        let mut base = config.workbench;
        if base.dataset.is_some() {
            state.dataset = base.dataset.clone();
        }
        if config.server.is_some() {
            state.server = config.server.clone();
        }
        base.dataset = state.dataset.clone();
        let mut notices = Vec::new();
        let remote = state.server.as_deref().and_then(|url| {
            match crate::remote::normalize_url(url) {
                Ok(url) => {
                    // A token given in the environment (scripts), else the one kept.
                    let token = std::env::var("SPAMSCOPE_TOKEN")
                        .ok()
                        .filter(|t| !t.is_empty())
                        .or_else(|| config.credentials.load(&url).map(|(t, _)| t));
                    Some(crate::workbench::RemoteConfig { url, token })
                }
                Err(e) => {
                    notices.push((Notice::Error(e.to_string()), Instant::now()));
                    None
                }
            }
        });
        if remote.is_none() {
            state.server = None;
        }
        let workbench = Self::workbench_for(&cc.egui_ctx, &base, remote);
        let mut frames = FrameStats::default();
        if let Some(p) = std::env::var_os("SPAMSCOPE_FRAME_LOG") {
            frames.log = Some((PathBuf::from(p), Instant::now()));
        }
        SpamscopeApp {
            workbench,
            score: ScorePanel::default(),
            explore: ExplorePanel,
            evaluate: EvaluatePanel::default(),
            versions: VersionsPanel::default(),
            settings: SettingsPanel::default(),
            queue: QueuePanel::default(),
            monitoring: monitoring::MonitoringPanel,
            compare: compare::ComparePanel::default(),
            policies: policies::PoliciesPanel::default(),
            state,
            notices: Vec::new(),
            frames,
            persist: config.persist,
            pending_dialog: None,
            path_prompt: None,
            team: team::TeamPanel,
            base,
            credentials: config.credentials,
            connect: None,
            token_saved: None,
        }
        .with_notices(notices)
    }

    fn with_notices(mut self, n: Vec<(Notice, Instant)>) -> SpamscopeApp {
        self.notices.extend(n);
        self
    }

    /// A started workbench: on this computer's registry, or on a team's service with
    /// its local copy.
    fn workbench_for(
        ctx: &egui::Context,
        base: &WorkbenchConfig,
        remote: Option<crate::workbench::RemoteConfig>,
    ) -> Workbench {
        let mut cfg = base.clone();
        if let Some(r) = &remote {
            cfg.registry_root = server_cache(&base.registry_root, &r.url);
        }
        cfg.remote = remote;
        let ctx = ctx.clone();
        let mut w = Workbench::new(cfg, Arc::new(move || ctx.request_repaint()));
        w.start();
        w
    }

    /// Works on the team's service at `url` with `token` (None: this computer's
    /// registry); the token is kept (keyring or a 0600 file) on a thread.
    pub fn connect_to(&mut self, ctx: &egui::Context, url: Option<String>, token: String) {
        let remote = url.map(|url| crate::workbench::RemoteConfig {
            url,
            token: Some(token.clone()).filter(|t| !t.trim().is_empty()),
        });
        if let Some(r) = &remote
            && let Some(t) = &r.token
        {
            let (tx, rx) = std::sync::mpsc::channel();
            let (creds, url, t, ctx2) = (
                self.credentials.clone(),
                r.url.clone(),
                t.clone(),
                ctx.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("keep-token".into())
                .spawn(move || {
                    let _ = tx.send(creds.save(&url, &t));
                    ctx2.request_repaint();
                });
            if spawned.is_ok() {
                self.token_saved = Some(rx);
            }
        }
        self.state.server = remote.as_ref().map(|r| r.url.clone());
        self.workbench = Self::workbench_for(ctx, &self.base, remote);
    }

    fn connect_window(&mut self, ctx: &egui::Context) {
        let Some(form) = self.connect.as_mut() else {
            return;
        };
        let mut go = None;
        let mut close = false;
        egui::Window::new("Connect to server")
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label("Work on a team's spamscope service: its versions, feedback and statistics. Scoring stays on this computer, on a copy of the team's model.");
                egui::Grid::new("connect").num_columns(2).show(ui, |ui| {
                    let l = ui.label("Server address:");
                    ui.add(
                        egui::TextEdit::singleline(&mut form.url)
                            .hint_text("http://127.0.0.1:8000")
                            .desired_width(360.0),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("API token:");
                    ui.add(
                        egui::TextEdit::singleline(&mut form.token)
                            .password(true)
                            .hint_text("empty: the one kept for this server")
                            .desired_width(360.0),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                });
                ui.weak("The token is asked once and kept in the system keyring, or in a file only you can read where there is none.");
                if let Some(e) = &form.error {
                    ui.colored_label(egui::Color32::from_rgb(235, 90, 80), e);
                }
                ui.horizontal(|ui| {
                    if ui.button("Connect").clicked() {
                        match crate::remote::normalize_url(&form.url) {
                            Ok(u) => go = Some(u),
                            Err(e) => form.error = Some(e.to_string()),
                        }
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            });
        if let Some(url) = go {
            // An empty field keeps the token already kept for this server.
            let token = Some(form.token.clone())
                .filter(|t| !t.trim().is_empty())
                .or_else(|| self.credentials.load(&url).map(|(t, _)| t))
                .unwrap_or_default();
            self.connect = None;
            self.connect_to(ctx, Some(url), token);
        } else if close {
            self.connect = None;
        }
    }

    /// No job running and, on the score screen, the explanation of the current inputs
    /// has arrived (tests wait for this).
    pub fn is_settled(&self) -> bool {
        if !self.workbench.is_idle() || self.pending_dialog.is_some() {
            return false;
        }
        match (&self.workbench.active, self.state.tab) {
            (Some(_), Tab::Score)
                if self.state.score.inputs.len() == crate::data::catalog::N_FEATURES =>
            {
                self.workbench
                    .explanation_for(&self.state.score.raw())
                    .is_some()
            }
            _ => true,
        }
    }

    /// The token kept for the service at `url`, if any (tests check where it went).
    pub fn credentials_load(&self, url: &str) -> Option<String> {
        self.credentials.load(url).map(|(t, _)| t)
    }

    /// The notices on screen, as text (tests read them).
    pub fn notices_text(&self) -> Vec<String> {
        self.notices
            .iter()
            .map(|(n, _)| match n {
                Notice::Info(t) | Notice::Error(t) => t.clone(),
            })
            .collect()
    }

    /// Drops the notices on screen.
    pub fn clear_notices(&mut self) {
        self.notices.clear();
        self.workbench.notices.clear();
    }

    fn open_dataset_dialog(&mut self, ctx: &egui::Context) {
        self.pick_file(ctx, PickPurpose::Dataset);
    }

    fn pick_file(&mut self, ctx: &egui::Context, purpose: PickPurpose) {
        // The native dialog blocks its thread: run it off the UI thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".into())
            .spawn(move || {
                let picked = match purpose {
                    PickPurpose::ReportFolder => rfd::FileDialog::new()
                        .set_title("Folder for the report")
                        .pick_folder(),
                    _ => rfd::FileDialog::new()
                        .add_filter("CSV", &["csv"])
                        .set_title("Open a dataset (label,user_id,X1..X51)")
                        .pick_file(),
                };
                let _ = tx.send(picked);
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.pending_dialog = Some((purpose, rx)),
            Err(e) => self.notices.push((
                Notice::Error(format!("cannot open a file dialog: {e}")),
                Instant::now(),
            )),
        }
    }

    fn menu(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open dataset…").clicked() {
                    self.open_dataset_dialog(ui.ctx());
                    ui.close();
                }
                if ui
                    .button("Open dataset by path…")
                    .on_hover_text("Type the path of a CSV (for systems without a file dialog)")
                    .clicked()
                {
                    self.path_prompt = Some(String::new());
                    ui.close();
                }
                if ui.button("Use the synthetic default data").clicked() {
                    self.workbench.use_synthetic();
                    ui.close();
                }
                ui.separator();
                if ui
                    .button("Connect to server…")
                    .on_hover_text("Work with your team on a spamscope service")
                    .clicked()
                {
                    self.connect = Some(ConnectForm {
                        url: self.state.server.clone().unwrap_or_default(),
                        ..Default::default()
                    });
                    ui.close();
                }
                if self.workbench.is_remote()
                    && ui
                        .button("Work on this computer only")
                        .on_hover_text("Leave the team's service: this computer's own registry and feedback")
                        .clicked()
                {
                    self.connect_to(ui.ctx(), None, String::new());
                    ui.close();
                }
                ui.separator();
                let can_report = self.workbench.active.is_some() && self.workbench.data.is_some();
                if ui
                    .add_enabled(can_report, egui::Button::new("Export report…"))
                    .on_hover_text("Model card (Markdown), PNG charts and the scored queue of the loaded data")
                    .clicked()
                {
                    self.pick_file(ui.ctx(), PickPurpose::ReportFolder);
                    ui.close();
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Model", |ui| {
                let training = self.workbench.is_training();
                if ui
                    .add_enabled(
                        !training && self.workbench.data.is_some(),
                        egui::Button::new("Train now"),
                    )
                    .on_hover_text("Train a new version on the loaded data and activate it")
                    .clicked()
                {
                    self.workbench.train_now();
                    ui.close();
                }
                if ui
                    .add_enabled(
                        !training && self.workbench.active.is_some(),
                        egui::Button::new("Retrain from feedback"),
                    )
                    .on_hover_text("Train a candidate with moderators' feedback; it is activated only if it passes the promotion gate")
                    .clicked()
                {
                    self.workbench.retrain_now();
                    ui.close();
                }
                if ui
                    .add_enabled(training, egui::Button::new("Cancel training"))
                    .clicked()
                {
                    for kind in [JobKind::Setup, JobKind::Train, JobKind::Retrain] {
                        self.workbench.cancel(kind);
                    }
                    ui.close();
                }
            });
        });
    }

    fn path_prompt(&mut self, ctx: &egui::Context) {
        let Some(text) = self.path_prompt.as_mut() else {
            return;
        };
        let mut open = None;
        let mut close = false;
        egui::Window::new("Open dataset by path")
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label("CSV with the columns label,user_id,X1..X51 (label optional):");
                let label = ui.label("Path:");
                let edit = ui
                    .add(egui::TextEdit::singleline(text).desired_width(420.0))
                    .labelled_by(label.id);
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.horizontal(|ui| {
                    if ui.button("Open").clicked() || enter {
                        open = Some(PathBuf::from(text.trim()));
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            });
        if let Some(path) = open {
            self.workbench.open_dataset(path);
            close = true;
        }
        if close {
            self.path_prompt = None;
        }
    }

    fn alerts(&mut self, ui: &mut egui::Ui) {
        let alerts = monitoring::alerts(&self.workbench);
        for (_, a) in &alerts {
            ui.colored_label(egui::Color32::from_rgb(235, 90, 80), format!("Alert: {a}"));
        }
        // To the webhook of the settings too (each kind at most every 10 minutes).
        self.workbench.raise_alerts(&alerts);
        self.damaged_banner(ui);
    }

    /// The active version cannot be loaded: say so, and offer the newest earlier
    /// version that loads.
    fn damaged_banner(&mut self, ui: &mut egui::Ui) {
        let Some(d) = self.workbench.damaged.clone() else {
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(
                egui::Color32::from_rgb(235, 90, 80),
                format!(
                    "The active version v{} is damaged and cannot score.",
                    d.version
                ),
            )
            .on_hover_text(&d.message);
            match d.fallback {
                Some(v) => {
                    let busy = self
                        .workbench
                        .jobs
                        .iter()
                        .any(|j| j.kind == crate::workbench::JobKind::Rollback);
                    if ui
                        .add_enabled(!busy, egui::Button::new(format!("Roll back to v{v}")))
                        .on_hover_text(format!(
                            "v{v} is the newest earlier version whose files are intact"
                        ))
                        .clicked()
                    {
                        self.workbench.rollback(v);
                    }
                }
                None => {
                    ui.label("No earlier version loads: use Model > Train now.");
                }
            }
        });
    }

    fn banner(&self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| match &self.workbench.data {
            Some(d) => {
                let (text, color) = if d.source.is_synthetic() {
                    (
                        format!("Data: {}", d.source.describe()),
                        egui::Color32::from_rgb(230, 180, 60),
                    )
                } else {
                    (
                        format!(
                            "Data: {} ({} accounts{})",
                            d.source.describe(),
                            d.n_rows(),
                            if d.labels.is_some() {
                                ", labelled"
                            } else {
                                ", no labels"
                            }
                        ),
                        ui.visuals().text_color(),
                    )
                };
                ui.label(egui::RichText::new(text).color(color));
                if !d.warnings.is_empty() {
                    ui.label(
                        egui::RichText::new(format!("{} warning(s)", d.warnings.len()))
                            .color(egui::Color32::from_rgb(230, 180, 60)),
                    )
                    .on_hover_text(d.warnings.join("\n"));
                }
            }
            None => {
                ui.label("Data: loading…");
            }
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(r) = &self.workbench.remote {
                let (filled, color, text) = if r.connected {
                    (
                        true,
                        egui::Color32::from_rgb(80, 180, 90),
                        format!(
                            "Connected to {}{}",
                            r.url,
                            r.serving.map_or(String::new(), |v| format!(" (version {v})"))
                        ),
                    )
                } else {
                    (
                        false,
                        egui::Color32::from_rgb(235, 90, 80),
                        format!("Offline: {}", r.url),
                    )
                };
                // A dot drawn, not a glyph: every font has it.
                let (rect, _) =
                    ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
                if filled {
                    ui.painter().circle_filled(rect.center(), 5.0, color);
                } else {
                    ui.painter()
                        .circle_stroke(rect.center(), 4.5, egui::Stroke::new(1.5, color));
                }
                let l = ui.label(text);
                if let Some(e) = &r.error {
                    l.on_hover_text(e);
                }
                ui.label(format!("{} feedback pending", r.pending));
                if r.refused > 0 {
                    ui.colored_label(
                        egui::Color32::from_rgb(235, 90, 80),
                        format!("{} refused", r.refused),
                    );
                }
                ui.separator();
            }
            if self.workbench.jobs.is_empty() {
                ui.label("Ready");
            }
            let jobs = self.workbench.jobs.clone();
            for j in &jobs {
                let text = if j.total > 1 {
                    format!("{}: {} {}/{}", j.kind.label(), j.stage, j.done, j.total)
                } else {
                    format!("{}: {}", j.kind.label(), j.stage)
                };
                match j.fraction() {
                    Some(f) => {
                        ui.add(egui::ProgressBar::new(f).text(text).desired_width(260.0));
                    }
                    None => {
                        ui.add(egui::Spinner::new());
                        ui.label(text);
                    }
                }
                if matches!(
                    j.kind,
                    JobKind::Train | JobKind::Setup | JobKind::Retrain | JobKind::Queue
                )
                    && ui.small_button("Cancel").clicked()
                {
                    j.cancel();
                }
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let (p50, p99, _) = self.frames.percentiles();
                let (c50, c99, _) = self.frames.frame_percentiles();
                ui.weak("frame time").on_hover_text(format!(
                    "Recent frames: UI build p50 {p50:.2} ms, p99 {p99:.2} ms; whole frame on the CPU p50 {c50:.2} ms, p99 {c99:.2} ms"
                ));
            });
        });
        // Notices: errors stay until dismissed, information fades after 8 s.
        self.notices.retain(|(n, t)| match n {
            Notice::Info(_) => t.elapsed().as_secs() < 8,
            Notice::Error(_) => true,
        });
        let mut dismiss = None;
        for (i, (n, _)) in self.notices.iter().enumerate().rev().take(3) {
            ui.horizontal(|ui| {
                match n {
                    Notice::Error(e) => {
                        ui.colored_label(
                            egui::Color32::from_rgb(235, 90, 80),
                            format!("Error: {e}"),
                        );
                    }
                    Notice::Info(m) => {
                        ui.label(m.as_str());
                    }
                }
                if ui.small_button("Dismiss").clicked() {
                    dismiss = Some(i);
                }
            });
        }
        if let Some(i) = dismiss {
            self.notices.remove(i);
        }
    }
}

impl eframe::App for SpamscopeApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.workbench.poll();
        let name = self.state.moderator.trim();
        self.workbench.moderator = (!name.is_empty()
            && crate::ops::feedback::check_moderator_name(name).is_ok())
        .then(|| name.to_string());
        for n in self.workbench.notices.drain(..) {
            self.notices.push((n, Instant::now()));
        }
        if let Some(rx) = &self.token_saved
            && let Ok(r) = rx.try_recv()
        {
            self.token_saved = None;
            self.notices.push((
                match r {
                    Ok(home) => Notice::Info(format!("token kept in {home}")),
                    Err(e) => Notice::Error(e),
                },
                Instant::now(),
            ));
        }
        if let Some((purpose, rx)) = &self.pending_dialog
            && let Ok(picked) = rx.try_recv()
        {
            let purpose = *purpose;
            self.pending_dialog = None;
            if let Some(path) = picked {
                match purpose {
                    PickPurpose::Dataset => self.workbench.open_dataset(path),
                    PickPurpose::Queue => self.workbench.score_queue(Some(path)),
                    PickPurpose::ReportFolder => self.workbench.export_report(Some(path)),
                }
            }
        }
        // Remember which data is loaded, so a restart reopens it.
        if let Some(d) = &self.workbench.data {
            self.state.dataset = match &d.source.kind {
                crate::data::SourceKind::Csv { path } => Some(PathBuf::from(path)),
                crate::data::SourceKind::Synthetic { .. } => None,
            };
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let start = Instant::now();
        egui::Panel::top("top").show(ui, |ui| {
            self.menu(ui);
            self.banner(ui);
            self.alerts(ui);
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.state.tab, Tab::Score, "Score an account");
                ui.selectable_value(&mut self.state.tab, Tab::Explore, "Explore data");
                ui.selectable_value(&mut self.state.tab, Tab::Evaluate, "Evaluate model");
                ui.selectable_value(&mut self.state.tab, Tab::Queue, "Review queue");
                ui.selectable_value(&mut self.state.tab, Tab::Monitoring, "Monitoring");
                ui.selectable_value(&mut self.state.tab, Tab::Versions, "Versions");
                ui.selectable_value(&mut self.state.tab, Tab::Compare, "Compare models");
                ui.selectable_value(&mut self.state.tab, Tab::Policies, "Policies");
                ui.selectable_value(&mut self.state.tab, Tab::Team, "Team");
                ui.selectable_value(&mut self.state.tab, Tab::Settings, "Settings");
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        self.path_prompt(&ui.ctx().clone());
        self.connect_window(&ui.ctx().clone());
        egui::CentralPanel::default().show(ui, |ui| match self.state.tab {
            Tab::Score => self
                .score
                .ui(ui, &mut self.state.score, &mut self.workbench),
            Tab::Explore => self
                .explore
                .ui(ui, &mut self.state.explore, &self.workbench),
            // Curves, then the calibration section below them: taller than a window.
            Tab::Evaluate => {
                egui::ScrollArea::vertical()
                    .id_salt("evaluate_scroll")
                    .show(ui, |ui| {
                        self.evaluate
                            .ui(ui, &mut self.state.evaluate, &mut self.workbench)
                    });
            }
            Tab::Versions => self
                .versions
                .ui(ui, &mut self.state.versions, &mut self.workbench),
            Tab::Settings => self
                .settings
                .ui(ui, &mut self.workbench, &mut self.state.moderator),
            Tab::Compare => {
                // The models, the tuning trials, the table and the curves.
                let action = egui::ScrollArea::vertical()
                    .id_salt("compare_scroll")
                    .show(ui, |ui| self.compare.ui(ui, &mut self.workbench))
                    .inner;
                if let Some(compare::CompareAction::PickReportFolder) = action {
                    self.pick_file(ui.ctx(), PickPurpose::ReportFolder);
                }
            }
            Tab::Monitoring => self.monitoring.ui(ui, &mut self.workbench),
            Tab::Policies => {
                let action = egui::ScrollArea::vertical()
                    .id_salt("policies_scroll")
                    .show(ui, |ui| self.policies.ui(ui, &mut self.workbench))
                    .inner;
                if let Some(policies::PoliciesAction::Open(i)) = action
                    && let Some(t) = self.workbench.policy_test.clone()
                {
                    let d = &t.data;
                    let label = d.labels.as_ref().map_or(String::new(), |l| {
                        format!(
                            " (labelled {})",
                            if l[i] == 1 { "spammer" } else { "legitimate" }
                        )
                    });
                    self.state.score.set_account(
                        &d.row(i),
                        d.user_ids[i].clone(),
                        format!(
                            "user {} from the policy backtest{label}",
                            crate::util::text::clip(&d.user_ids[i])
                        ),
                    );
                    self.state.tab = Tab::Score;
                }
            }
            Tab::Team => self.team.ui(ui, &mut self.workbench),
            Tab::Queue => {
                match self
                    .queue
                    .ui(ui, &mut self.state.queue, &mut self.workbench)
                {
                    Some(queue::QueueAction::Open(i)) => {
                        if let Some(q) = self.workbench.queue.clone() {
                            let label = q.data.labels.as_ref().map_or(String::new(), |l| {
                                format!(
                                    " (labelled {})",
                                    if l[i] == 1 { "spammer" } else { "legitimate" }
                                )
                            });
                            self.state.score.set_account(
                                &q.data.row(i),
                                q.data.user_ids[i].clone(),
                                format!(
                                    "user {} from the review queue{label}",
                                    crate::util::text::clip(&q.data.user_ids[i])
                                ),
                            );
                            self.state.tab = Tab::Score;
                        }
                    }
                    Some(queue::QueueAction::PickFile) => {
                        self.pick_file(ui.ctx(), PickPurpose::Queue)
                    }
                    None => {}
                }
            }
        });
        // Keep animating progress while jobs run.
        if !self.workbench.is_idle() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        self.frames.record(
            start.elapsed().as_secs_f64() * 1000.0,
            frame.info().cpu_usage.map(|s| f64::from(s) * 1000.0),
            !self.workbench.is_idle(),
        );
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, eframe::APP_KEY, &self.state);
        }
    }

    fn auto_save_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }
}

/// Sends `tracing` events to a daily-rotated log in `REGISTRY/logs/` (14 files kept).
/// The returned guard flushes the log when dropped.
fn start_logging(
    registry_root: &std::path::Path,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use crate::store::layout::{LOG_PREFIX, LOG_SUFFIX, Layout};
    let dir = Layout::new(registry_root).logs_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(LOG_PREFIX)
        .filename_suffix(LOG_SUFFIX)
        .max_log_files(14)
        .build(&dir)
        .ok()?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .try_init()
        .ok()?;
    Some(guard)
}

/// Opens the app window (blocks until it is closed).
pub fn run(server: Option<String>) -> Result<(), eframe::Error> {
    let mut config = AppConfig::standard();
    config.server = server;
    let root = &config.workbench.registry_root;
    let _log = start_logging(root);
    tracing::info!(registry = %root.display(), "spamscope app starting");
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("spamscope")
            .with_app_id("spamscope")
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([900.0, 600.0]),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native(
        "spamscope",
        options,
        Box::new(move |cc| Ok(Box::new(SpamscopeApp::new(cc, config)))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_logged_to_a_daily_file_in_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let guard = start_logging(dir.path()).expect("logging starts");
        tracing::info!(job = "Training", "version 3 trained");
        drop(guard); // flushes
        let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(logs.len(), 1);
        let name = logs[0].file_name().to_string_lossy().to_string();
        assert!(
            name.starts_with("spamscope.") && name.ends_with(".log"),
            "{name}"
        );
        let text = std::fs::read_to_string(logs[0].path()).unwrap();
        assert!(
            text.contains("version 3 trained") && text.contains("Training"),
            "{text}"
        );
    }

    #[test]
    fn ui_state_survives_a_round_trip_through_eframe_storage_format() {
        let mut s = UiState {
            tab: Tab::Evaluate,
            dataset: Some(PathBuf::from("/data/accounts.csv")),
            ..Default::default()
        };
        s.score.inputs = vec![Some(1.0); crate::data::catalog::N_FEATURES];
        s.score.inputs[12] = None;
        s.score.category = 3;
        s.evaluate.working = Some((2, 0.35));
        s.explore.feature = 7;
        // eframe stores app state as RON.
        let text = ron::to_string(&s).unwrap();
        let back: UiState = ron::from_str(&text).unwrap();
        assert_eq!(back.tab, Tab::Evaluate);
        assert_eq!(back.dataset, s.dataset);
        assert_eq!(back.score.inputs, s.score.inputs);
        assert_eq!(back.score.category, 3);
        assert_eq!(back.evaluate.working, Some((2, 0.35)));
        assert_eq!(back.explore.feature, 7);
        // Older or partial state still loads (missing fields take defaults).
        let partial: UiState = ron::from_str("(tab: Explore)").unwrap();
        assert_eq!(partial.tab, Tab::Explore);
        assert!(partial.score.inputs.is_empty());
    }
}

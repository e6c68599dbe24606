//! `logdist top`: a distributor's dashboard in a terminal, in the spirit of `vector top`.
//! Each second it reads the distributor's `GET /dashboard/snapshot` (the same snapshot the
//! browser's page is fed) and draws the distributor's numbers and one row per analyzer.
//! `q`, `Esc` or Ctrl-C quits.
//!
//! Fetching ([`fetch`]) and drawing ([`draw`], pure: a [`View`] onto a frame) are apart
//! from the terminal ([`run`]), so a test draws a live distributor's snapshot on ratatui's
//! `TestBackend`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::distributor::{AnalyzerRow, Snapshot};
use crate::http::client::JsonClient;

/// `logdist top`: see the module docs.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// The distributor to watch.
    #[arg(long, env = "LOGDIST_TOP_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// How often to read its snapshot (the distributor takes one a second).
    #[arg(long, env = "LOGDIST_TOP_INTERVAL", default_value = "1s", value_parser = crate::parse_duration)]
    pub interval: Duration,
}

/// What is drawn: the distributor's address and its last snapshot, or why there is none.
#[derive(Debug, Clone)]
pub struct View {
    /// The distributor's base URL.
    pub url: String,
    /// The last snapshot read, if any.
    pub snapshot: Option<Snapshot>,
    /// Why the last read failed, if it did (the last good snapshot stays on screen).
    pub error: Option<String>,
}

/// A client for [`fetch`].
pub fn client() -> anyhow::Result<JsonClient> {
    Ok(JsonClient::new(
        Duration::from_secs(3),
        None,
        crate::http::tls::client_config(None)?,
    ))
}

/// Reads one snapshot from the distributor at `url`.
pub async fn fetch(client: &JsonClient, url: &str) -> anyhow::Result<Snapshot> {
    client
        .get(&format!("{}/dashboard/snapshot", url.trim_end_matches('/')))
        .await
}

/// Runs `logdist top` until `q`, `Esc`, Ctrl-C or `shutdown`.
pub async fn run(args: TopArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = client()?;
    let mut view = View {
        url: args.url.trim_end_matches('/').to_owned(),
        snapshot: None,
        error: None,
    };
    // Fail early, before the terminal is taken, when there is no distributor there.
    match fetch(&client, &view.url).await {
        Ok(snapshot) => view.snapshot = Some(snapshot),
        Err(e) => return Err(e).context(format!("cannot read {}", view.url)),
    }
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let keys = keys();
    let result = watch(
        &mut terminal,
        &client,
        &mut view,
        args.interval,
        keys,
        shutdown,
    )
    .await;
    ratatui::restore();
    result
}

async fn watch(
    terminal: &mut ratatui::DefaultTerminal,
    client: &JsonClient,
    view: &mut View,
    interval: Duration,
    mut keys: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        terminal.draw(|frame| draw(frame, view))?;
        tokio::select! {
            _ = tick.tick() => match fetch(client, &view.url).await {
                Ok(snapshot) => (view.snapshot, view.error) = (Some(snapshot), None),
                Err(e) => view.error = Some(format!("{e:#}")),
            },
            key = keys.recv() => match key {
                Some(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return Ok(()),
            },
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The terminal's events, read on a thread of their own (crossterm's reads block).
fn keys() -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Ends with `top` (the receiver is gone), or when there is no terminal to read.
        while !tx.is_closed() {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => {
                    let sent = event::read().map(|e| tx.send(e).is_ok());
                    if !matches!(sent, Ok(true)) {
                        return;
                    }
                }
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// Draws `view`: the distributor's line, the analyzers' table, and a line of help.
pub fn draw(frame: &mut Frame, view: &View) {
    let mut lines = Vec::new();
    match &view.snapshot {
        Some(s) => {
            let d = &s.distributor;
            lines.push(Line::from(vec![
                Span::styled("logdist ", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    "v{}  {}  up {}  memory {}",
                    d.version,
                    view.url,
                    uptime(d.uptime_s),
                    bytes(d.rss_bytes as usize)
                )),
            ]));
            lines.push(Line::raw(format!(
                "in {} msg/s  delivered {} msg/s  online {}/{}  re-routed {}  parked {}",
                rate(d.messages_in_per_s),
                rate(d.messages_delivered_per_s),
                d.online,
                s.analyzers.len(),
                d.rerouted_total,
                d.parked
            )));
            if let Some(spool) = &d.spool {
                lines.push(Line::raw(format!(
                    "spool {} packets  {}  oldest {}  replayed {}  damaged {}",
                    spool.packets,
                    bytes(spool.bytes as usize),
                    uptime(spool.oldest_s),
                    spool.replayed_total,
                    bytes(spool.corrupt_bytes_total as usize)
                )));
            }
            let rejects = if d.rejects.is_empty() {
                "0".to_owned()
            } else {
                d.rejects
                    .iter()
                    .map(|(why, n)| format!("{why} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            lines.push(Line::raw(format!("rejects {rejects}")));
        }
        None => lines.push(Line::raw(format!("logdist top: {}", view.url))),
    }
    if let Some(error) = &view.error {
        lines.push(Line::styled(
            format!("error: {error}"),
            Style::new().fg(Color::Red),
        ));
    }
    let [head, table, foot] = Layout::vertical([
        Constraint::Length(lines.len().max(4) as u16),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(lines), head);

    let header = Row::new([
        "ANALYZER",
        "STATE",
        "PROTO",
        "WEIGHT",
        "TARGET",
        "SHARE",
        "MSG/S",
        "PKT/S",
        "QUEUE",
        "P50/P99 MS",
        "ERRORS",
        "REROUTE",
        "RETRY",
        "EJECT",
        "CHECK",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = view
        .snapshot
        .iter()
        .flat_map(|s| &s.analyzers)
        .map(row)
        .collect();
    let widths = [
        Constraint::Min(12),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(16),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(9),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" analyzers ")),
        table,
    );
    frame.render_widget(
        Paragraph::new("q quit · shares are of messages · the same as GET / in a browser")
            .style(Style::new().fg(Color::DarkGray)),
        foot,
    );
}

fn row(a: &AnalyzerRow) -> Row<'static> {
    let colour = match a.state.as_str() {
        "online" => Color::Green,
        "unhealthy" => Color::Red,
        _ => Color::Yellow,
    };
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v}"));
    let check = a.last_probe.as_ref().map_or("-".to_owned(), |p| {
        format!("{} {:.0}s", if p.ok { "ok" } else { "fail" }, p.age_s)
    });
    Row::new([
        Cell::from(a.id.clone()),
        Cell::from(a.state.clone()).style(Style::new().fg(colour)),
        Cell::from(a.protocol.clone()),
        Cell::from(format!("{}", a.weight)),
        Cell::from(format!("{:.3}", a.target_share)),
        Cell::from(format!("{:.3}", a.share)),
        Cell::from(rate(a.messages_per_s)),
        Cell::from(rate(a.packets_per_s)),
        Cell::from(format!("{}p {}", a.queued_packets, bytes(a.queued_bytes))),
        Cell::from(format!("{}/{}", ms(a.latency_p50_ms), ms(a.latency_p99_ms))),
        Cell::from(format!("{}", a.failed_deliveries + a.rejected_packets)),
        Cell::from(format!("{}", a.rerouted_packets)),
        Cell::from(format!("{}", a.retried_deliveries)),
        Cell::from(format!("{}", a.ejections)),
        Cell::from(check),
    ])
}

fn rate(n: f64) -> String {
    if n >= 100.0 {
        crate::thousands(n.round() as u64)
    } else {
        format!("{n:.1}")
    }
}

fn bytes(n: usize) -> String {
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < 3 {
        value /= 1024.0;
        unit += 1;
    }
    let unit = ["B", "KiB", "MiB", "GiB"][unit];
    if unit == "B" {
        format!("{n} B")
    } else {
        format!("{value:.1} {unit}")
    }
}

fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

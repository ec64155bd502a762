//! Reload on SIGHUP and on config file change (debounced). A broken config keeps the old one
//! running and reports the located error in logs, `/api/v1/health` and a metric.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::selfmetrics::ResultLabels;

/// Reloads now; returns whether the new config was applied.
pub async fn reload_now(state: &AppState) -> bool {
    let path = PathBuf::from(
        state
            .reload
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .path
            .clone(),
    );
    let now = Utc::now();
    // Through discovery: it owns the whole monitor list (written + discovered).
    let result = match crate::load_config(&path) {
        Ok(loaded) => {
            let (auth, status_page) = (
                loaded.config.auth.clone(),
                loaded.config.status_page.clone(),
            );
            let agents_config = loaded.config.clone();
            let exposure_plans = crate::exposure_plans(&loaded.config);
            let controls = crate::control_specs(&loaded.config);
            match state.discovery.apply(loaded).await {
                Ok(report) => {
                    state.exposure.apply(exposure_plans);
                    crate::record_config_version(&state.store, &path, "reload").await;
                    // Users and tokens, then the status page, follow the new config.
                    let generated = match crate::auth::ensure_admin(
                        &state.store,
                        &state.data_dir,
                        &auth,
                    )
                    .await
                    {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::warn!(error = %e, "reload: cannot prepare the generated admin");
                            None
                        }
                    };
                    state.auth.update(&auth, generated);
                    state.web.status.update(status_page);
                    *state
                        .web
                        .controls
                        .write()
                        .unwrap_or_else(|p| p.into_inner()) = controls;
                    state.agents.update(&agents_config);
                    state.agents.tick(&state.engine);
                    Ok(report)
                }
                Err(e) => Err(e),
            }
        }
        Err(diags) => Err(diags),
    };
    let mut st = state.reload.write().unwrap_or_else(|p| p.into_inner());
    st.last_attempt_at = now;
    st.reloads += 1;
    match result {
        Ok(report) => {
            tracing::info!(added = ?report.added, removed = ?report.removed, changed = ?report.changed, "config reloaded");
            st.ok = true;
            st.error = None;
            st.last_success_at = now;
            st.last_changes = report;
            state.self_metrics.reload_ok.set(1);
            state.self_metrics.last_reload.set(now.timestamp());
            state
                .self_metrics
                .reloads
                .get_or_create(&ResultLabels {
                    result: "ok".into(),
                })
                .inc();
            true
        }
        Err(e) => {
            tracing::error!("config reload failed, keeping the previous config:\n{e}");
            st.ok = false;
            st.error = Some(e);
            state.self_metrics.reload_ok.set(0);
            state
                .self_metrics
                .reloads
                .get_or_create(&ResultLabels {
                    result: "error".into(),
                })
                .inc();
            false
        }
    }
}

/// Watches SIGHUP and the config file (its directory, so editors that replace the file are
/// seen); changes are debounced by 500 ms.
pub async fn watch(path: PathBuf, state: AppState, mut stop: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let file_name = path.file_name().map(|n| n.to_os_string());
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let tx2 = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let ours = ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name);
            if ours && !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx2.send(());
            }
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "file watching unavailable; reload with SIGHUP");
            None
        }
    };
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let hup_fut = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = crate::stopped(&mut stop) => return,
            _ = hup_fut => {
                tracing::info!("SIGHUP: reloading the config");
                reload_now(&state).await;
            }
            Some(()) = rx.recv() => {
                // Debounce: editors write in several steps.
                tokio::time::sleep(Duration::from_millis(500)).await;
                while rx.try_recv().is_ok() {}
                tracing::info!("config file changed: reloading");
                reload_now(&state).await;
            }
        }
    }
}

//! No configured secret reaches a log line, an error message or a delivery report — not even
//! when the receiver fails, times out, is unreachable, or echoes the whole request back in its
//! error body. Every tracing event of every crate (TRACE level: reqwest, hyper, ours) is
//! captured while it happens.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Receiver, channels, grouped, single};
use portwarden_notify::Event;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

const SECRETS: &[&str] = &[
    "slackTOKENxyz123456",
    "discordTOKENabc98765",
    "teamsSIGqwe45678",
    "PDROUTINGKEY0123456789abcdef0123",
    "hookPATHtoken5544",
    "hookQUERYsecret7788",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "bearerTOKEN3141",
    "twilioAUTHtoken2718",
    "smsAPIkey1618",
    "smtpPASSWORD1414",
];

#[tokio::test]
async fn secrets_stay_out_of_logs_and_errors() {
    let cap = Capture::default();
    tracing_subscriber::fmt()
        .with_writer(cap.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .init();

    let rx = Receiver::start().await;
    rx.echo(500);
    let dead = portwarden_testkit::free_port();
    let base = rx.url("");
    let yaml = |b: &str| {
        format!(
            r#"receivers:
  slack: {{type: slack, url: "{b}/services/T1/B1/slackTOKENxyz123456"}}
  discord: {{type: discord, url: "{b}/api/webhooks/1/discordTOKENabc98765"}}
  teams: {{type: teams, url: "{b}/workflows/x?sig=teamsSIGqwe45678"}}
  pd: {{type: pagerduty, routing_key: PDROUTINGKEY0123456789abcdef0123, url: "{b}/v2/enqueue"}}
  hook:
    type: webhook
    url: "{b}/hookPATHtoken5544?key=hookQUERYsecret7788"
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    headers: {{Authorization: "Bearer bearerTOKEN3141"}}
  twilio: {{type: sms, account_sid: AC1, auth_token: twilioAUTHtoken2718, from: "+1555", to: ["+1556"], url: "{b}"}}
  smshttp:
    type: sms
    provider: http
    url: "{b}/send?apikey=smsAPIkey1618"
    to: ["+1557"]
    body_template: "{{{{ text }}}}"
  mail: {{type: email, host: 127.0.0.1, port: {dead}, username: u, password: smtpPASSWORD1414, from: a@example.com, to: [b@example.com], timeout: 2s}}
"#
        )
    };
    let mut reports = Vec::new();
    // A receiver that fails and echoes the request; then nobody listening at all.
    for b in [base.clone(), format!("http://127.0.0.1:{dead}")] {
        let ch = channels(&yaml(&b));
        reports.push(format!(
            "{:?}",
            portwarden_config::load_str(&yaml(&b), "t.yaml")
                .unwrap()
                .config
                .receivers
        ));
        for (name, c) in &ch {
            reports.push(c.destination());
            for n in [single(Event::Trigger), grouped(3, Event::Resolve)] {
                match c.send(&n).await {
                    Ok(d) => reports.push(format!("{name}: {d:?}")),
                    Err(e) => {
                        tracing::warn!(receiver = %name, error = %e, "notification failed");
                        reports.push(format!("{name}: {e} / {e:?}"));
                    }
                }
            }
        }
    }
    assert_eq!(
        rx.seen().len(),
        14,
        "every HTTP channel reached the echoing receiver twice"
    );
    // The echo really carried the secrets back (so scrubbing was exercised).
    assert!(
        rx.seen()
            .iter()
            .any(|r| r.path.contains("slackTOKENxyz123456"))
    );

    let logs = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("notification failed"),
        "the capture works: {logs}"
    );
    let reports = reports.join("\n");
    for s in SECRETS {
        assert!(!logs.contains(s), "secret {s} in the logs:\n{logs}");
        assert!(
            !reports.contains(s),
            "secret {s} in errors or reports:\n{reports}"
        );
    }
    // What the errors do say: the host and the status.
    assert!(
        reports.contains(&format!("slack to {}: HTTP 500", rx.addr)),
        "{reports}"
    );
}

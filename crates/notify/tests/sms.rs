//! SMS through a Twilio-compatible API and a generic HTTP API, against a real HTTP receiver on
//! loopback.

mod common;

use base64::Engine;
use common::{Receiver, Reply, channels, single};
use portwarden_notify::Event;
use portwarden_notify::sms::fits_one_segment;

fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

#[tokio::test]
async fn twilio_one_request_per_recipient_one_segment() {
    let rx = Receiver::start().await;
    rx.default_reply(Reply::new(201, r#"{"sid": "SM0001", "status": "queued"}"#));
    let ch = channels(&format!(
        "receivers:\n  sms:\n    type: sms\n    account_sid: AC0123\n    auth_token: twilio-token-77aa\n    from: \"+15550000001\"\n    to: [\"+15550000002\", \"+15550000003\"]\n    url: {}\n",
        rx.url("")
    ));
    let n = single(Event::Trigger);
    let d = ch["sms"].send(&n).await.unwrap();
    assert_eq!(d.status, Some(201));
    assert_eq!(d.detail.as_deref(), Some("message SM0001"));
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC0123:twilio-token-77aa")
    );
    for (r, to) in seen.iter().zip(["+15550000002", "+15550000003"]) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/2010-04-01/Accounts/AC0123/Messages.json");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.header("authorization").as_deref(), Some(auth.as_str()));
        assert_eq!(
            r.header("idempotency-key"),
            Some(format!("pw-7-trigger:{to}"))
        );
        let f = form(&r.body);
        assert_eq!(f["To"], to);
        assert_eq!(f["From"], "+15550000001");
        let body = &f["Body"];
        assert!(fits_one_segment(body), "{body}");
        assert!(
            body.starts_with("DOWN db1-port-5400 refused since "),
            "{body}"
        );
        assert!(
            body.contains("svc-0/checkout high in eu-west owner team-payments"),
            "{body}"
        );
    }

    // Resolve: the duration instead of the error.
    ch["sms"].send(&single(Event::Resolve)).await.unwrap();
    let f = form(&rx.seen()[2].body);
    assert!(
        f["Body"].starts_with("RECOVERED db1-port-5400 after 3m 20s since "),
        "{}",
        f["Body"]
    );
}

#[tokio::test]
async fn a_retry_after_a_partial_failure_skips_served_recipients() {
    let rx = Receiver::start().await;
    rx.script([
        Reply::new(201, r#"{"sid": "SM1"}"#),
        Reply::new(503, r#"{"code": 20503, "message": "Service unavailable"}"#),
    ]);
    rx.default_reply(Reply::new(201, r#"{"sid": "SM2"}"#));
    let ch = channels(&format!(
        "receivers:\n  sms:\n    type: sms\n    account_sid: AC1\n    api_key: SK1\n    auth_token: t0ken-x\n    messaging_service_sid: MG1\n    to: [\"+15550000002\", \"+15550000003\"]\n    url: {}\n",
        rx.url("")
    ));
    let n = single(Event::Trigger);
    let e = ch["sms"].send(&n).await.unwrap_err();
    assert!(e.retryable && e.status == Some(503), "{e:?}");
    ch["sms"].send(&n).await.unwrap();
    let seen = rx.seen();
    let tos: Vec<String> = seen.iter().map(|r| form(&r.body)["To"].clone()).collect();
    assert_eq!(tos, ["+15550000002", "+15550000003", "+15550000003"]);
    let f = form(&seen[0].body);
    assert_eq!(f["MessagingServiceSid"], "MG1");
    assert!(!f.contains_key("From"));
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("SK1:t0ken-x")
    );
    assert_eq!(seen[0].header("authorization"), Some(auth));
    // A permanent rejection (bad number) is not retried.
    rx.script([Reply::new(
        400,
        r#"{"code": 21211, "message": "The 'To' number is not valid."}"#,
    )]);
    let mut other = n.clone();
    other.idempotency_key = "pw-8-trigger".into();
    let e = ch["sms"].send(&other).await.unwrap_err();
    assert!(!e.retryable && e.message.contains("21211"), "{e}");
}

#[tokio::test]
async fn generic_http_sms_template() {
    let rx = Receiver::start().await;
    let yaml = format!(
        r#"receivers:
  sms:
    type: sms
    provider: http
    url: {}
    from: PORTWARDEN
    to: ["+15550000009"]
    headers:
      X-Api-Key: sms-api-key-5521
    body_template: '{{"recipient": {{{{ to|tojson }}}}, "sender": {{{{ from|tojson }}}}, "message": {{{{ text|tojson }}}}, "incident": {{{{ incident_id }}}}}}'
"#,
        rx.url("/send")
    );
    let ch = channels(&yaml);
    let n = single(Event::Trigger);
    ch["sms"].send(&n).await.unwrap();
    let r = &rx.seen()[0];
    assert_eq!(r.path, "/send");
    assert_eq!(r.header("x-api-key").as_deref(), Some("sms-api-key-5521"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let p = r.json();
    assert_eq!(p["recipient"], "+15550000009");
    assert_eq!(p["sender"], "PORTWARDEN");
    assert_eq!(p["incident"], 7);
    let text = p["message"].as_str().unwrap();
    assert!(
        fits_one_segment(text) && text.starts_with("DOWN db1-port-5400"),
        "{text}"
    );
}

//! The OpenAPI description at /api/v10/openapi.json: served without a token, OpenAPI 3.1,
//! and every operation it lists reaches a handler (none gets the router's own 404 or 405).
//! Schemathesis checks the rest against a live host (deploy/dev/schemathesis).

use guildhall_e2e::Server;
use hyper::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_described_operation_reaches_a_handler() {
    let server = Server::start(&[]).await;
    let http = server.http();
    let (token, _) = http.register("alice").await;
    let doc = http.raw(Method::GET, "/openapi.json", None, vec![]).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "{} paths", paths.len());
    let mut checked = 0;
    for (template, methods) in paths {
        let path: String = template
            .split('/')
            .map(|s| match s {
                "{emoji}" => "%F0%9F%91%8D".to_owned(),
                "{code}" => "nosuchcode".to_owned(),
                s if s.starts_with('{') => "1".to_owned(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = http.raw(method.clone(), &path, Some(&token), b"{}".to_vec()).await;
            let routed = !(matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED)
                && answer.body["code"] == 0);
            assert!(routed, "{method} {template}: {} {}", answer.status, answer.body);
            checked += 1;
        }
    }
    // And the router's own answers for what is not described.
    let unknown = http.raw(Method::GET, "/guilds/1/nothing", Some(&token), vec![]).await;
    assert_eq!((unknown.status, unknown.body["code"].as_u64()), (StatusCode::NOT_FOUND, Some(0)));
    let wrong = http.raw(Method::PUT, "/gateway", Some(&token), vec![]).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header("allow"), Some("GET"), "a 405 says what is allowed (RFC 9110)");
    let members = http.raw(Method::POST, "/guilds/1/members/1", Some(&token), vec![]).await;
    assert_eq!(members.header("allow"), Some("DELETE, GET, PATCH"));
    // A route that needs a token answers 401 without one, before looking at the body.
    let anonymous = http.raw(Method::PATCH, "/channels/1", None, b"{\"name\": 5}".to_vec()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.body);
    // Path segments are percent-decoded: %40me is @me.
    let me = http.raw(Method::GET, "/guilds/1/members/%40me", Some(&token), vec![]).await;
    assert_ne!(me.body["message"], "Invalid Form Body: Value \"%40me\" is not snowflake.", "{}", me.body);
    assert_eq!(me.status, StatusCode::NOT_FOUND, "{}", me.body);
    println!("{checked} operations reach their handlers");
}

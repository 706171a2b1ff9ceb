//! Metric queries against a Prometheus stand-in: what is sent (path, query, credentials) and
//! how each kind of answer is read.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clients_support::{Reply, TestServer, refused_url};
use flagger::metrics::{MetricsClient, QueryContext, TemplateData};
use flagger_core::MetricAnswer;
use flagger_core::api::MetricTemplateSpec;
use flagger_core::api::metric_template::{LocalRef, MetricProvider};
use flagger_core::command::{MetricQuery, MetricSource};

fn vector(values: &[&str]) -> String {
    let series: Vec<String> = values
        .iter()
        .map(|v| format!(r#"{{"metric":{{}},"value":[1700000000.5,"{v}"]}}"#))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

fn query(source: MetricSource, provider: &str) -> MetricQuery {
    MetricQuery {
        name: "m".into(),
        source,
        interval: "1m".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        provider: provider.into(),
        ingress: None,
    }
}

fn ctx(server: &str) -> QueryContext {
    QueryContext {
        default_server: server.to_string(),
        canary_name: "podinfo-canary".into(),
        ..QueryContext::default()
    }
}

fn client() -> MetricsClient {
    MetricsClient::with_timeout(Duration::from_millis(500)).unwrap()
}

fn template_ctx(
    server: &str,
    provider: MetricProvider,
    q: &str,
    secret: Option<&[(&str, &str)]>,
) -> QueryContext {
    QueryContext {
        template: Some(Ok(TemplateData {
            spec: MetricTemplateSpec {
                provider: MetricProvider {
                    address: Some(server.to_string()),
                    ..provider
                },
                query: q.to_string(),
            },
            secret: secret.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect::<BTreeMap<_, _>>()
            }),
        })),
        ..ctx("http://unused.invalid")
    }
}

fn template_source(variables: &[(&str, &str)]) -> MetricSource {
    MetricSource::Template {
        name: "latency".into(),
        namespace: "flagger".into(),
        variables: variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn prometheus() -> MetricProvider {
    MetricProvider {
        type_: "prometheus".into(),
        ..MetricProvider::default()
    }
}

#[tokio::test]
async fn success_rate_sends_the_istio_query_and_reads_the_value() {
    let server = TestServer::fixed(200, &vector(&["99.5"])).await;
    let answer = client()
        .answer(
            &query(MetricSource::RequestSuccessRate, "istio"),
            &ctx(&server.url),
        )
        .await;
    assert_eq!(answer, MetricAnswer::Value(99.5));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/api/v1/query");
    let sent = requests[0].query_param("query").unwrap();
    assert!(sent.starts_with("sum(rate(istio_requests_total{"), "{sent}");
    assert!(
        sent.contains(r#"destination_workload_namespace="test""#),
        "{sent}"
    );
    assert!(
        sent.contains(r#"destination_workload=~"podinfo""#),
        "{sent}"
    );
    assert!(sent.contains(r#"response_code!~"5.*""#), "{sent}");
    assert!(sent.contains("[1m]"), "{sent}");
    assert!(!sent.contains('\n'), "whitespace is collapsed: {sent}");
}

#[tokio::test]
async fn duration_on_gateway_api_is_converted_from_seconds_to_milliseconds() {
    let server = TestServer::fixed(200, &vector(&["0.2519"])).await;
    let answer = client()
        .answer(
            &query(MetricSource::RequestDuration, "gatewayapi:v1"),
            &ctx(&server.url),
        )
        .await;
    assert_eq!(answer, MetricAnswer::Value(251.0));
    let sent = server.requests()[0].query_param("query").unwrap();
    assert!(
        sent.contains("http_request_duration_seconds_bucket"),
        "{sent}"
    );
}

#[tokio::test]
async fn the_canary_metrics_server_overrides_the_default() {
    let canary_server = TestServer::fixed(200, &vector(&["12"])).await;
    let default_server = TestServer::fixed(200, &vector(&["99"])).await;
    let context = QueryContext {
        canary_metrics_server: Some(canary_server.url.clone()),
        ..ctx(&default_server.url)
    };
    let answer = client()
        .answer(&query(MetricSource::RequestDuration, "istio"), &context)
        .await;
    assert_eq!(answer, MetricAnswer::Value(12.0));
    assert!(default_server.requests().is_empty());
}

#[tokio::test]
async fn last_series_wins() {
    let server = TestServer::fixed(200, &vector(&["1", "2", "3"])).await;
    let q = query(MetricSource::Inline { query: "up".into() }, "istio");
    assert_eq!(
        client().answer(&q, &ctx(&server.url)).await,
        MetricAnswer::Value(3.0)
    );
}

#[tokio::test]
async fn empty_vector_and_nan_mean_no_values() {
    for body in [vector(&[]), vector(&["NaN"])] {
        let server = TestServer::fixed(200, &body).await;
        let answer = client()
            .answer(
                &query(MetricSource::RequestSuccessRate, "istio"),
                &ctx(&server.url),
            )
            .await;
        assert_eq!(
            answer,
            MetricAnswer::NoValues("no values found".into()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn infinities_are_values() {
    let server = TestServer::fixed(200, &vector(&["+Inf"])).await;
    let q = query(MetricSource::Inline { query: "x".into() }, "istio");
    assert_eq!(
        client().answer(&q, &ctx(&server.url)).await,
        MetricAnswer::Value(f64::INFINITY)
    );
}

#[tokio::test]
async fn http_errors_carry_the_body() {
    let server = TestServer::fixed(500, "query timed out in expression evaluation").await;
    let answer = client()
        .answer(
            &query(MetricSource::RequestSuccessRate, "istio"),
            &ctx(&server.url),
        )
        .await;
    assert_eq!(
        answer,
        MetricAnswer::Error(
            "error response: Status 500 Internal Server Error: query timed out in expression evaluation"
                .into()
        )
    );
    let server = TestServer::fixed(400, r#"{"status":"error","error":"parse error"}"#).await;
    let q = query(
        MetricSource::Inline {
            query: "sum(".into(),
        },
        "istio",
    );
    match client().answer(&q, &ctx(&server.url)).await {
        MetricAnswer::Error(e) => {
            assert!(e.contains("Status 400") && e.contains("parse error"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn slow_servers_time_out_as_errors() {
    let body = vector(&["1"]);
    let server = TestServer::start(move |_, _| {
        Reply::new(200, body.clone()).delayed(Duration::from_secs(3))
    })
    .await;
    let started = std::time::Instant::now();
    let answer = client()
        .answer(
            &query(MetricSource::RequestSuccessRate, "istio"),
            &ctx(&server.url),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    match answer {
        MetricAnswer::Error(e) => assert!(e.contains("timed out"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unreachable_servers_are_errors() {
    let url = refused_url().await;
    let answer = client()
        .answer(
            &query(MetricSource::RequestSuccessRate, "istio"),
            &ctx(&url),
        )
        .await;
    match answer {
        MetricAnswer::Error(e) => assert!(e.starts_with("request failed:"), "{e}"),
        other => panic!("{other:?}"),
    }
    let answer = client()
        .answer(
            &query(MetricSource::RequestSuccessRate, "istio"),
            &ctx("not a url"),
        )
        .await;
    assert!(matches!(answer, MetricAnswer::Error(_)), "{answer:?}");
}

#[tokio::test]
async fn address_path_prefix_is_kept() {
    let server = TestServer::fixed(200, &vector(&["1"])).await;
    let address = format!("{}/monitoring/prometheus/", server.url);
    let q = query(MetricSource::Inline { query: "up".into() }, "istio");
    assert_eq!(
        client().answer(&q, &ctx(&address)).await,
        MetricAnswer::Value(1.0)
    );
    assert_eq!(
        server.requests()[0].path,
        "/monitoring/prometheus/api/v1/query"
    );
}

#[tokio::test]
async fn templates_use_basic_auth_from_the_secret_and_headers() {
    let server = TestServer::fixed(200, &vector(&["7"])).await;
    let provider = MetricProvider {
        secret_ref: Some(LocalRef {
            name: "prom-auth".into(),
        }),
        headers: Some(BTreeMap::from([(
            "X-Scope-OrgID".to_string(),
            vec!["tenant-a".to_string()],
        )])),
        ..prometheus()
    };
    let context = template_ctx(
        &server.url,
        provider,
        r#"sum(rate(req{ns="{{ namespace }}",canary="{{ name }}",code="{{ variables.code }}"}[{{ interval }}]))"#,
        Some(&[("username", "admin"), ("password", "s3cret")]),
    );
    let answer = client()
        .answer(
            &query(template_source(&[("code", "500")]), "istio"),
            &context,
        )
        .await;
    assert_eq!(answer, MetricAnswer::Value(7.0));
    let r = &server.requests()[0];
    // base64("admin:s3cret")
    assert_eq!(
        r.header("authorization").as_deref(),
        Some("Basic YWRtaW46czNjcmV0")
    );
    assert_eq!(r.header("x-scope-orgid").as_deref(), Some("tenant-a"));
    assert_eq!(
        r.query_param("query").unwrap(),
        r#"sum(rate(req{ns="test",canary="podinfo-canary",code="500"}[1m]))"#
    );
}

#[tokio::test]
async fn templates_use_a_bearer_token_from_the_secret() {
    let server = TestServer::fixed(200, &vector(&["7"])).await;
    let provider = MetricProvider {
        secret_ref: Some(LocalRef {
            name: "prom-auth".into(),
        }),
        ..prometheus()
    };
    let context = template_ctx(&server.url, provider, "up", Some(&[("token", "abc.def")]));
    let answer = client()
        .answer(&query(template_source(&[]), "istio"), &context)
        .await;
    assert_eq!(answer, MetricAnswer::Value(7.0));
    assert_eq!(
        server.requests()[0].header("authorization").as_deref(),
        Some("Bearer abc.def")
    );
}

#[tokio::test]
async fn template_problems_are_errors_without_a_request() {
    let server = TestServer::fixed(200, &vector(&["1"])).await;
    let unsupported = MetricProvider {
        type_: "datadog".into(),
        ..MetricProvider::default()
    };
    let answer = client()
        .answer(
            &query(template_source(&[]), "istio"),
            &template_ctx(&server.url, unsupported, "avg:x", None),
        )
        .await;
    assert_eq!(
        answer,
        MetricAnswer::Error("provider type datadog is not supported".into())
    );

    let answer = client()
        .answer(
            &query(template_source(&[]), "istio"),
            &template_ctx(
                &server.url,
                prometheus(),
                r#"x{a="{{ variables.missing }}"}"#,
                None,
            ),
        )
        .await;
    match answer {
        MetricAnswer::Error(e) => assert!(e.contains("no entry for key \"missing\""), "{e}"),
        other => panic!("{other:?}"),
    }

    let answer = client()
        .answer(&query(template_source(&[]), "istio"), &ctx(&server.url))
        .await;
    assert_eq!(
        answer,
        MetricAnswer::Error("metric template latency.flagger not found".into())
    );

    let lookup_failed = QueryContext {
        template: Some(Err("secret prom-auth not found".into())),
        ..ctx(&server.url)
    };
    let answer = client()
        .answer(&query(template_source(&[]), "istio"), &lookup_failed)
        .await;
    assert_eq!(
        answer,
        MetricAnswer::Error("secret prom-auth not found".into())
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn hostile_names_stay_inside_their_strings() {
    let server = TestServer::fixed(200, &vector(&["100"])).await;
    let mut q = query(MetricSource::RequestSuccessRate, "istio");
    q.namespace = r#"x"} or vector(100) #"#.into();
    q.target = "a.*|b".into();
    assert_eq!(
        client().answer(&q, &ctx(&server.url)).await,
        MetricAnswer::Value(100.0)
    );
    let sent = server.requests()[0].query_param("query").unwrap();
    assert!(
        sent.contains(r#"destination_workload_namespace="x\"} or vector(100) #""#),
        "{sent}"
    );
    assert!(
        sent.contains(r#"destination_workload=~"a\\.\\*\\|b""#),
        "{sent}"
    );
}

#[tokio::test]
async fn is_online_expects_vector_one() {
    let server = TestServer::fixed(200, &vector(&["1"])).await;
    assert_eq!(client().is_online(&server.url).await, Ok(()));
    assert_eq!(
        server.requests()[0].query_param("query").as_deref(),
        Some("vector(1)")
    );
    let wrong = TestServer::fixed(200, &vector(&["0"])).await;
    assert!(client().is_online(&wrong.url).await.is_err());
    let down = refused_url().await;
    let err = client().is_online(&down).await.unwrap_err();
    assert!(
        err.starts_with("running query failed: request failed"),
        "{err}"
    );
}

//! Reading a review body: JSON only, at most [`BODY_LIMIT`] bytes, within the request
//! deadline, and counted against the global [`ByteBudget`] as the bytes arrive.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{AppState, BODY_LIMIT};

/// A request refused before evaluation: status, metric reason, message.
pub struct Rejection(pub StatusCode, pub &'static str, pub String);

/// Checks the content type and reads the body. The returned permit holds the body's
/// bytes in the budget until it is dropped.
pub async fn read(
    st: &AppState,
    req: Request,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Rejection> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        let shown = crate::policy::decision::truncated(content_type, 64);
        return Err(Rejection(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("content type must be application/json, got {shown:?}"),
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let deadline = tokio::time::Instant::now() + st.request_timeout;
    let mut body = req.into_body();
    let capacity = declared.map_or(8 * 1024, |n| n as usize);
    let mut buf = Vec::with_capacity(capacity.min(BODY_LIMIT));
    let mut held = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Rejection(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!("request body not received within {:?}", st.request_timeout),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Rejection(
                    StatusCode::BAD_REQUEST,
                    "body",
                    format!("reading request body: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > BODY_LIMIT {
            return Err(too_large());
        }
        if !st.bytes.take(data.len(), &mut held) {
            return Err(Rejection(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many request bytes in flight; retry".to_owned(),
            ));
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), held))
}

fn too_large() -> Rejection {
    Rejection(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("request body larger than {BODY_LIMIT} bytes"),
    )
}

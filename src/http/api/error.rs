//! The streamer API's errors: JSON with a stable machine-readable code.
//!
//! | status | `code` |
//! |---|---|
//! | 400 | `bad_request` (malformed JSON, a body that is not an object) |
//! | 401 | `missing_token`, `invalid_token` (unknown, malformed or revoked) |
//! | 404 | `not_found` |
//! | 405 | `method_not_allowed` |
//! | 413 | `payload_too_large` |
//! | 415 | `unsupported_media_type` (a body that is not `application/json`) |
//! | 422 | `validation_failed` (with `fields`: one entry per bad field) |
//! | 429 | `rate_limited` (with `Retry-After`, whole seconds rounded up) |
//! | 503 | `unavailable` (storage down; with `Retry-After`) |
//! | 500 | `internal` |

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::app::accounts::ActionError;

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<FieldError>,
    retry_after: Option<u64>,
}

/// `realm` of the `WWW-Authenticate` challenge.
const REALM: &str = "ChatPulse API";

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), fields: Vec::new(), retry_after: None }
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send your API token as `Authorization: Bearer <token>` (create one on the dashboard)",
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", "the API token is unknown, malformed or revoked")
    }

    pub fn not_found(message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take this method")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 naming each bad field.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        let message = format!("invalid: {}", names.join(", "));
        Self { fields, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message) }
    }

    pub fn rate_limited(wait: Duration) -> Self {
        let seconds = retry_after_seconds(wait);
        let message = format!("this token's request budget is spent; retry in {seconds} s");
        Self { retry_after: Some(seconds), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message) }
    }

    /// A dependency failed; logged here, answered without its details.
    pub fn unavailable(detail: &str) -> Self {
        tracing::warn!(error = %detail, "API request failed: dependency unavailable");
        Self {
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is unavailable; retry shortly")
        }
    }

    /// The status of this error (for tests and logs).
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// `Retry-After` in whole seconds, rounded up (a client that waits that long
/// is let through), at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            // The token's streamer was removed between the two reads.
            ActionError::NotFound => Self::not_found("not found"),
            ActionError::Forbidden => Self::not_found("not found"),
            ActionError::Unavailable(detail) => Self::unavailable(&detail),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON (Content-Type: application/json)",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
            }
            _ => Self::bad_request(format!("the body is not valid JSON: {}", rejection.body_text())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = match self.code {
                "invalid_token" => format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
                _ => format!("Bearer realm=\"{REALM}\""),
            };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(29_500)), 30);
    }

    #[tokio::test]
    async fn a_validation_error_names_each_field_in_json() {
        let e = ApiError::validation(vec![FieldError {
            field: "decay_speed".into(),
            code: "decay_out_of_range".into(),
            message: "decay speed must be a number between 0.1 and 2".into(),
        }]);
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["fields"][0]["field"], "decay_speed");
        assert_eq!(body["error"]["fields"][0]["code"], "decay_out_of_range");
    }

    #[test]
    fn a_401_challenges_for_a_bearer_token() {
        let missing = ApiError::missing_token().into_response();
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"ChatPulse API\"");
        let invalid = ApiError::invalid_token().into_response();
        assert_eq!(
            invalid.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"ChatPulse API\", error=\"invalid_token\""
        );
    }
}

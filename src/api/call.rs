//! A checked call on its way: on-demand elevation, the guarded call, and
//! the one retry with a fresh app token when Wix refuses the cached one.

use tokio::time::Instant;

use http::StatusCode;

use super::{
    WixApi, WixApiError, WixApiErrorKind, WixResponse, error::ErrorInner, response::answer_result,
};
use crate::{
    client::{ApiAnswer, ApiCall},
    elevated_token::ElevatedToken,
};

/// A checked call on its way to Wix.
pub(super) struct Call<'a> {
    pub(super) api: &'a WixApi,
    pub(super) call: ApiCall<'a>,
    pub(super) deadline: Instant,
}

impl Call<'_> {
    pub(super) async fn run(&self) -> Result<WixResponse, WixApiError> {
        let api = self.api;
        let elevator = &api.route.elevator;
        let token = match &api.token {
            Some(token) => token.clone(),
            None => api
                .route
                .elevate_on_demand(&api.caller)
                .await
                .map_err(WixApiError::from_rejection)?,
        };
        let answer = self.send_with(&token).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return answer_result(answer);
        }
        // Wix refused the app token itself: replace it (once for every
        // request that saw it) and try once more.
        let metrics = &elevator.client().metrics().app_token_recovery;
        let fresh = elevator
            .app_tokens()
            .replace(&token, self.deadline)
            .await
            .map_err(WixApiError::from_rejection)?;
        let answer = self.send_with(&fresh).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            metrics.rejected.increment(1);
            tracing::warn!(
                target: "wix_elevate::api",
                instance_id = api.caller.instance_id(),
                wix_request_id = answer.request_id.as_deref(),
                "Wix refused a freshly created app token"
            );
            return Err(WixApiError::from(ErrorInner {
                wix_status: Some(answer.status),
                request_id: answer.request_id,
                ..ErrorInner::new(WixApiErrorKind::AppTokenRejected)
            }));
        }
        metrics.recovered.increment(1);
        answer_result(answer)
    }

    async fn send_with(&self, token: &ElevatedToken) -> Result<ApiAnswer, WixApiError> {
        Ok(self
            .api
            .route
            .elevator
            .client()
            .api(&self.call, &token.authorization_header(), self.deadline)
            .await?)
    }
}

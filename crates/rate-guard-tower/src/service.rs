//! [`RateGuardService`]: decides each request before the inner service sees it.
//!
//! - A request no rule applies to (guard off, exempt path, no global rule and no limit on its
//!   route) goes straight to the inner service.
//! - Otherwise its rules are planned from the request (peer, headers, route template) and
//!   decided in **one** store call, all-or-nothing. The memory store, the deny cache and an open
//!   breaker answer without waiting: then the inner service is called at once, from `call`.
//!   When the store has to be waited on (Redis), the ready inner service is taken along
//!   (`std::mem::replace` with a clone, as tower-service advises) and called when the decision
//!   arrives.
//! - Admitted: the inner service's response gets the rate limit headers. Refused: the inner
//!   service is not called; the response is the 429 (or 503) with `Retry-After`, the rate
//!   limit headers and the JSON body the Python adapters send.
//! - The guard never fails a request: store errors end in the configured degraded answer, and
//!   the service's errors are the inner service's.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::guard::{Answer, RateGuard};
use crate::response::RateHeaders;

/// Rate limits requests to `S` with a [`RateGuard`]; made by
/// [`RateGuardLayer`](crate::RateGuardLayer). Clones share the guard: one limit for all.
#[derive(Debug, Clone)]
pub struct RateGuardService<S> {
    inner: S,
    guard: RateGuard,
}

impl<S> RateGuardService<S> {
    /// `inner` behind `guard`.
    pub fn new(inner: S, guard: RateGuard) -> Self {
        Self { inner, guard }
    }

    /// The guard.
    pub fn guard(&self) -> &RateGuard {
        &self.guard
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, without the guard.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> RateGuardService<S> {
    fn answer<ReqBody, ResBody>(
        &mut self,
        answer: Answer,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        match answer {
            Answer::Admitted(headers) => ResponseFuture::calling(self.inner.call(request), headers),
            Answer::Refused(outcome) => ResponseFuture::refused(outcome),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateGuardService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let plan = self.guard.plan(&parts);
        let request = Request::from_parts(parts, body);
        let Some(plan) = plan else {
            return ResponseFuture::calling(self.inner.call(request), RateHeaders::None);
        };
        // The one "answer now" path: the memory store answers at once, with no future to
        // build, box or poll. Anything else (Redis, including answers from the deny cache or
        // an open breaker) is decided by the response future, whose first poll comes from
        // the caller's task right away.
        if let Some(answer) = self.guard.decide_now(&plan) {
            return self.answer(answer, request);
        }
        let decision = self.guard.decide_owned(plan);
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::deciding(decision, ready, request)
    }
}

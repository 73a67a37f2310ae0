//! [`ResponseFuture`]: the decision, then the inner service's response (or the refusal).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use rate_guard_core::BoxFuture;
use rate_guard_http::Outcome;
use tower_service::Service;

use crate::guard::Answer;
use crate::response::{refusal, RateHeaders};

pin_project! {
    /// The response future of [`RateGuardService`](crate::RateGuardService).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // Waiting on the store, with the ready inner service and the request.
        Deciding {
            decision: BoxFuture<'static, Answer>,
            service: Option<S>,
            request: Option<Request<ReqBody>>,
        },
        // Admitted (or not limited): the inner service's future, and the headers to add.
        Calling {
            #[pin]
            future: S::Future,
            headers: RateHeaders,
        },
        // Refused without calling the inner service.
        Refused {
            outcome: Option<Box<Outcome>>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn deciding(
        decision: BoxFuture<'static, Answer>,
        service: S,
        request: Request<ReqBody>,
    ) -> Self {
        Self {
            state: State::Deciding {
                decision,
                service: Some(service),
                request: Some(request),
            },
        }
    }

    pub(crate) fn calling(future: S::Future, headers: RateHeaders) -> Self {
        Self {
            state: State::Calling { future, headers },
        }
    }

    pub(crate) fn refused(outcome: Box<Outcome>) -> Self {
        Self {
            state: State::Refused {
                outcome: Some(outcome),
            },
        }
    }
}

impl<S, ReqBody> std::fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Deciding { .. } => "deciding",
            State::Calling { .. } => "calling",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

const POLLED_AFTER_READY: &str = "ResponseFuture polled after it completed";

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding {
                    decision,
                    service,
                    request,
                } => {
                    let headers = match ready!(decision.as_mut().poll(cx)) {
                        Answer::Admitted(headers) => headers,
                        Answer::Refused(outcome) => {
                            this.state.set(State::Refused {
                                outcome: Some(outcome),
                            });
                            continue;
                        }
                    };
                    let mut service = service.take().expect(POLLED_AFTER_READY);
                    let request = request.take().expect(POLLED_AFTER_READY);
                    let future = service.call(request);
                    this.state.set(State::Calling { future, headers });
                }
                StateProj::Calling { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    std::mem::take(headers).apply(response.headers_mut());
                    return Poll::Ready(Ok(response));
                }
                StateProj::Refused { outcome } => {
                    let outcome = outcome.take().expect(POLLED_AFTER_READY);
                    return Poll::Ready(Ok(refusal(&outcome)));
                }
            }
        }
    }
}

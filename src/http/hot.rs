//! The hot doors without the router: `GET /v1/check`, `GET /` (the RT
//! drop-in), `/v1/auth` (any method) and `GET /healthz` are matched by
//! exact path here and answered by the same handlers, behind the same
//! request metrics, deadline, panic guard and client check as through the
//! router, without what the router adds to every request (its path
//! match, the matched path, original URI and connection info stored in
//! the request's extensions, a boxed route future). Everything else, and
//! these paths with other methods or when client rate limits are counted
//! on Redis, goes through the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::access::Access;
use super::error::ApiError;
use super::observe::{Observe, observe};
use super::{check, forward_auth, health, rt};

/// A door served here, and its route's index in [`Observe`].
#[derive(Debug, Clone, Copy)]
pub enum Door {
    Healthz(usize),
    Scoring(Scoring, usize),
}

/// The scoring doors served here (behind the client check).
#[derive(Debug, Clone, Copy)]
pub enum Scoring {
    Check,
    Rt,
    Auth,
}

#[derive(Clone)]
pub struct Hot {
    state: AppState,
    obs: Arc<Observe>,
    /// The scoring doors' client check; None on a surface without them.
    access: Option<Arc<Access>>,
    limit: Duration,
    healthz: Option<usize>,
    check: Option<usize>,
    rt: Option<usize>,
    auth: Option<usize>,
}

impl Hot {
    /// The hot doors `obs`'s routes include. `access`: the scoring
    /// doors' client check, when the surface has them; with a fleet-wide
    /// rate limit (an await on Redis) they are left to the router.
    pub fn new(
        state: AppState,
        obs: Arc<Observe>,
        access: Option<Arc<Access>>,
        limit: Duration,
    ) -> Self {
        let access = access.filter(|a| a.is_local());
        let scoring = |path| access.as_ref().and(obs.index_of(path));
        Hot {
            healthz: obs.index_of("/healthz"),
            check: scoring("/v1/check"),
            rt: scoring("/"),
            auth: scoring("/v1/auth"),
            state,
            obs,
            access,
            limit,
        }
    }

    /// The door a request goes to, if it is one of these.
    pub fn door(&self, method: &Method, path: &str) -> Option<Door> {
        let scoring = |door, route: Option<usize>| route.map(|i| Door::Scoring(door, i));
        match path {
            // (HEAD stays on the router, which writes Content-Length: 0.)
            "/v1/auth" if method != Method::HEAD => scoring(Scoring::Auth, self.auth),
            _ if method != Method::GET => None,
            "/v1/check" => scoring(Scoring::Check, self.check),
            "/" => scoring(Scoring::Rt, self.rt),
            "/healthz" => self.healthz.map(Door::Healthz),
            _ => None,
        }
    }

    /// Answers a request for `door` (from [`Hot::door`]).
    pub async fn serve(&self, door: Door, req: Request, peer: SocketAddr) -> Response {
        let route = match door {
            Door::Healthz(i) | Door::Scoring(_, i) => i,
        };
        let span = super::observe::request_span(req.method(), self.obs.route(route));
        let answered = observe(&self.obs, route, span, self.limit, || async move {
            Ok::<_, std::convert::Infallible>(self.answer(door, req, peer).await)
        })
        .await;
        match answered {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    async fn answer(&self, door: Door, req: Request, peer: SocketAddr) -> Response {
        let Door::Scoring(door, _) = door else {
            return health::healthz().await;
        };
        // (A scoring door resolves only with its check in place.)
        let Some(access) = &self.access else {
            return ApiError::internal().into_response();
        };
        let client = match access.admit_local(&req) {
            Ok(name) => Some(name.clone()),
            Err(refused) => return refused.into_response(),
        };
        let state = &self.state;
        let answered = match door {
            Scoring::Check => check::answer_get(state, req, client).await,
            Scoring::Rt => rt::answer(state, req, client).await,
            Scoring::Auth => forward_auth::answer(state, peer, req, client).await,
        };
        answered.into_response()
    }
}

//! Federated algorithms, one module each. Every module has the same three parts:
//!
//! * **site half** — `site_*` functions: what a site computes from its own patients. They
//!   return an [`Aggregate`](crate::proto::Aggregate) or a [`SiteRefusal`], and enforce the
//!   site's `min_count` on every population the aggregate summarises;
//! * **coordinator half** — `combine*` functions: how the answers of all sites are merged;
//! * **pooled reference** — `pooled*` functions: the same computation on all rows in one
//!   process. Tests check that combine(site halves) equals the pooled reference;
//! * **what a site accepts** — `site_accepts*` / `accept_*` functions: the checks a site runs
//!   on a task's parameters against the study plan its operator approved (grids, seeds,
//!   populations, model bounds, rounds), each with the attack it stops and why it suffices.
//!   The site agent's `acceptance` module applies them to every task kind.

pub mod classifiers;
pub mod cohort_summary;
pub mod combat;
pub mod correlation;
pub mod encoder;
pub mod extraction;
pub mod fedavg;
pub mod folds;
pub mod glm;
pub mod lasso;
pub mod logistic;
pub mod metrics;
pub mod paired_auc;
pub mod split;
pub mod standardise;
pub mod table1;
#[doc(hidden)]
pub mod testdata;
pub mod trees;
pub mod univariate;

use crate::aggregate::AggregateError;
use crate::proto::{Refusal, RefusalReason};

/// A site's typed "no". Its detail is about populations and parameters, never about a patient.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SiteRefusal {
    #[error("{what} has {n} patients, fewer than this site's minimum of {min}")]
    BelowMinCount { what: String, n: u64, min: u64 },
    #[error("precondition not met: {0}")]
    Precondition(String),
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
}

impl SiteRefusal {
    pub fn to_proto(&self) -> Refusal {
        let reason = match self {
            SiteRefusal::BelowMinCount { .. } => RefusalReason::BelowMinCount,
            SiteRefusal::Precondition(_) => RefusalReason::Precondition,
            SiteRefusal::InvalidParameters(_) => RefusalReason::InvalidParameters,
        };
        Refusal { reason: reason as i32, detail: self.to_string() }
    }
}

/// Refuses an aggregate over a population smaller than the policy allows.
pub fn require_min_count(what: &str, n: u64, min: u64) -> Result<(), SiteRefusal> {
    if n < min { Err(SiteRefusal::BelowMinCount { what: what.to_string(), n, min }) } else { Ok(()) }
}

/// Why the coordinator could not combine the sites' answers.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CombineError {
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    #[error("no site answered")]
    NoSites,
    #[error("site {site}: {detail}")]
    Inconsistent { site: String, detail: String },
}

/// Runs a future whose awaits complete at once (an in-process "federation" of function
/// calls), so the async drivers the coordinator uses over the network also serve the pooled
/// references and tests. Panics if the future would wait.
pub fn block_on_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("block_on_ready: the future waited on something"),
    }
}

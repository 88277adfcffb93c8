use crate::{HopCall, HopLayer, Next};
use async_trait::async_trait;
use switchboard_core::{Error, ErrorKind, Result};

/// Refuses hops past the request's budget (`RunContext::max_hops`), so a looping router or agent
/// cannot fan out without bound.
pub struct HopBudget;

#[async_trait]
impl HopLayer for HopBudget {
    async fn handle(&self, hop: &mut HopCall, next: Next<'_>) -> Result<()> {
        if !hop.ctx.take_hop() {
            return Err(Error::new(
                ErrorKind::RateLimited,
                format!("hop budget of {} per request exhausted", hop.ctx.max_hops),
            ));
        }
        next.run(hop).await
    }
}

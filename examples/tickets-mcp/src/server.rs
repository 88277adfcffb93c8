//! The MCP tools. Each call acts for the [`Caller`] that the auth middleware attached to the HTTP
//! request carrying it, never for whoever opened the MCP session.

use crate::auth::Caller;
use crate::tickets::{Ticket, TicketBook, TicketStatus};
use axum::http::request::Parts;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const MAX_TITLE_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 4000;

/// Which tickets `list_tickets` returns.
// Inlined as a plain `enum` of strings: the simplest schema for routers and argument fillers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
#[allow(missing_docs)] // Variant docs would turn the schema's `enum` into a `oneOf`.
pub enum StatusFilter {
    #[default]
    Open,
    Closed,
    All,
}

impl StatusFilter {
    fn status(self) -> Option<TicketStatus> {
        match self {
            Self::Open => Some(TicketStatus::Open),
            Self::Closed => Some(TicketStatus::Closed),
            Self::All => None,
        }
    }
}

/// Arguments of `list_tickets`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListTicketsArgs {
    /// Which of the caller's tickets to list: `open` (the default), `closed`, or `all`.
    #[serde(default)]
    pub status: StatusFilter,
}

/// Arguments of `show_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ShowTicketArgs {
    /// The ticket id, e.g. `TCK-1003`.
    pub id: String,
}

/// Arguments of `open_ticket`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OpenTicketArgs {
    /// A one-line summary of the problem or request.
    pub title: String,
    /// Details: what happened, where, since when.
    #[serde(default)]
    pub description: Option<String>,
}

/// The structured result of `list_tickets`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TicketList {
    /// The filter applied: `open`, `closed` or `all`.
    pub status: StatusFilter,
    /// How many tickets matched.
    pub count: usize,
    /// The matching tickets, oldest first.
    pub tickets: Vec<Ticket>,
}

/// The MCP server handler; rmcp builds one per session, all sharing one ticket book.
#[derive(Clone)]
pub(crate) struct TicketsServer {
    book: Arc<TicketBook>,
    // Read by the code `#[tool_handler]` generates.
    tool_router: ToolRouter<Self>,
}

impl TicketsServer {
    pub(crate) fn new(book: Arc<TicketBook>) -> Self {
        Self { book, tool_router: Self::tool_router() }
    }
}

#[tool_router]
impl TicketsServer {
    /// Lists the caller's own support tickets.
    #[tool(
        description = "List the caller's own IT/helpdesk support tickets (id, title, status). \
            Use it for questions like 'what are my open tickets?' or 'show my closed tickets'. \
            Only tickets owned by the signed-in caller are ever returned.",
        annotations(title = "List my tickets", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<TicketList>()
    )]
    async fn list_tickets(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<ListTicketsArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&ctx)?;
        let tickets = self.book.list(caller.id(), args.status.status());
        let kind = match args.status {
            StatusFilter::All => "",
            StatusFilter::Open => "open ",
            StatusFilter::Closed => "closed ",
        };
        let text = if tickets.is_empty() {
            format!("No {kind}tickets for {}.", caller.id())
        } else {
            let plural = if tickets.len() == 1 { "" } else { "s" };
            let mut text = format!("{} {kind}ticket{plural} for {}:", tickets.len(), caller.id());
            for t in &tickets {
                text.push_str(&format!("\n- {} [{}] {}", t.id, t.status.as_str(), t.title));
            }
            text
        };
        let list = TicketList { status: args.status, count: tickets.len(), tickets };
        structured(text, &list)
    }

    /// Shows one of the caller's tickets.
    #[tool(
        description = "Show the full details (title, description, status) of one of the caller's own \
            support tickets, by id such as TCK-1003. Tickets of other people cannot be shown.",
        annotations(title = "Show a ticket", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<Ticket>()
    )]
    async fn show_ticket(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<ShowTicketArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&ctx)?;
        match self.book.get(caller.id(), &args.id) {
            Some(t) => structured(describe(&t), &t),
            // Deliberately the same answer for "someone else's" and "does not exist".
            None => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "no ticket {} for you",
                printable_id(&args.id)
            ))])),
        }
    }

    /// Opens a ticket for the caller.
    #[tool(
        description = "Open a new support ticket owned by the caller, e.g. to report a broken laptop \
            or request access. Returns the new ticket, including its id.",
        annotations(title = "Open a ticket", read_only_hint = false, destructive_hint = false, open_world_hint = false),
        output_schema = schema_for_output::<Ticket>()
    )]
    async fn open_ticket(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<OpenTicketArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&ctx)?;
        let title = args.title.trim();
        let description = args.description.as_deref().unwrap_or_default().trim();
        let problem = if title.is_empty() {
            Some("a ticket needs a title".to_string())
        } else if title.chars().count() > MAX_TITLE_CHARS {
            Some(format!("the title is longer than {MAX_TITLE_CHARS} characters"))
        } else if description.chars().count() > MAX_DESCRIPTION_CHARS {
            Some(format!("the description is longer than {MAX_DESCRIPTION_CHARS} characters"))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Ok(CallToolResult::error(vec![ContentBlock::text(problem)]));
        }
        let t = self.book.open(caller.id(), title, description);
        structured(format!("Opened {}.\n{}", t.id, describe(&t)), &t)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TicketsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Support tickets of the signed-in caller: list them, show one by id, or open a new one. \
                 Every call sees only the caller's own tickets.",
            )
    }
}

/// The verified caller of the HTTP request this tool call came in. Missing only if the router
/// was assembled without the auth layer; then the call is refused rather than served anonymously.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request carries no verified caller", None))
}

fn structured<T: Serialize>(text: String, value: &T) -> Result<CallToolResult, ErrorData> {
    let value = serde_json::to_value(value)
        .map_err(|e| ErrorData::internal_error(format!("cannot encode the result: {e}"), None))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    Ok(result)
}

fn describe(t: &Ticket) -> String {
    let mut text = format!("{} [{}] {}", t.id, t.status.as_str(), t.title);
    if !t.description.is_empty() {
        text.push('\n');
        text.push_str(&t.description);
    }
    text
}

/// The id as echoed in an error: short and printable, since it is caller-supplied text.
fn printable_id(id: &str) -> String {
    id.trim().chars().filter(|c| !c.is_control()).take(32).collect()
}

//! Function tools: a function of the program that embeds Switchboard, declared as an agent and
//! called as a governed hop.
//!
//! ```toml
//! # agents/orders.toml
//! name = "orders"
//! kind = "tool"
//! description = "Looks up an order's status by its id."
//! allowed_roles = ["support"]
//!
//! [tool.function]
//! name = "lookup_order"     # registered by the program: Functions::register
//! ```
//!
//! The program registers the function with its argument schema ([`Function::new`]) and loads
//! the runtime with it (`Runtime::load_with_functions`). Arguments come from the routing model's
//! proposal, the tool's own model call, or the question offline, as for HTTP tools, and are
//! validated against the function's schema before it runs. The call is a `tool` hop named after
//! the function: policy, the per-tool role matrix, the credential mode, the timeout, a span and an
//! audit row apply as to any other hop, and the function receives the caller and the hop's
//! credential, never a token it could mint itself.

use crate::args::ArgsValidator;
use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use switchboard_core::{
    Agent, AgentInput, AgentOutput, AgentSpec, Caller, Credential, Error, HopKind, Result, RunContext,
};
use switchboard_govern::{Egress, HopTarget};
use switchboard_llm::LlmClient;

/// One call of a function tool, as the function receives it.
#[derive(Debug, Clone)]
pub struct FunctionCall {
    /// The arguments, validated against the function's schema, defaults filled in.
    pub arguments: Map<String, Value>,
    /// The caller the run acts for.
    pub caller: Arc<Caller>,
    /// What the hop's credential mode resolved to: the caller's downscoped token (`obo`), the
    /// service principal's (`automatic`) or the named secret (`manual`), for the backend the
    /// function calls. Its token never appears in spans, audit rows or errors; the function
    /// must not put it in its answer either.
    pub credential: Credential,
}

type Handler = dyn Fn(FunctionCall) -> BoxFuture<'static, Result<AgentOutput>> + Send + Sync;

/// A function a tool agent may call: a name, the JSON Schema of its arguments, and the code.
#[derive(Clone)]
pub struct Function {
    name: String,
    schema: Arc<Value>,
    handler: Arc<Handler>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Function {
    /// A function named `name` (letters, digits, `_` and `-`, as agent files refer to it), taking
    /// arguments described by `schema` (an object schema; the model is offered it and every call
    /// is validated against it). Fails with [`Error::config`] on a bad name or schema.
    pub fn new<F, Fut>(name: impl Into<String>, schema: Value, handler: F) -> Result<Self>
    where
        F: Fn(FunctionCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AgentOutput>> + Send + 'static,
    {
        let name = name.into();
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(Error::config(format!(
                "function `{name}`: a name is 1 to 64 letters, digits, `_` or `-`"
            )));
        }
        ArgsValidator::new(&name, &schema)?;
        Ok(Self { name, schema: Arc::new(schema), handler: Arc::new(move |call| handler(call).boxed()) })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JSON Schema of its arguments.
    pub fn schema(&self) -> &Arc<Value> {
        &self.schema
    }
}

/// The functions a program registers for its function tools, by name.
#[derive(Debug, Clone, Default)]
pub struct Functions(BTreeMap<String, Function>);

impl Functions {
    /// No functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `function`; a second function of the same name is refused.
    pub fn register(&mut self, function: Function) -> Result<&mut Self> {
        if self.0.contains_key(&function.name) {
            return Err(Error::config(format!("function `{}` is registered twice", function.name)));
        }
        self.0.insert(function.name.clone(), function);
        Ok(self)
    }

    /// The function named `name`.
    pub fn get(&self, name: &str) -> Option<&Function> {
        self.0.get(name)
    }

    /// The function an agent's `[tool.function]` names, or an error saying what is registered.
    fn resolve(&self, agent: &str, name: &str) -> Result<Function> {
        self.0.get(name).cloned().ok_or_else(|| {
            let registered = if self.0.is_empty() {
                "none is: function tools are for programs that embed Switchboard and register \
                 their functions (Runtime::load_with_functions)"
                    .to_string()
            } else {
                let names: Vec<String> = self.0.keys().map(|n| format!("`{n}`")).collect();
                format!("registered: {}", names.join(", "))
            };
            Error::config(format!(
                "agent `{agent}`: tool.function.name `{name}` is not a registered function ({registered})"
            ))
        })
    }
}

/// The `[tool.function]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSettings {
    /// The registered function's name.
    pub name: String,
}

impl FunctionSettings {
    /// Reads and validates the `[tool.function]` table of `spec`. A function tool reaches
    /// nothing through a connection, so naming one is refused.
    pub fn from_spec(spec: &AgentSpec) -> Result<Self> {
        let table = spec.settings.get("function").cloned().unwrap_or(Value::Null);
        if !table.is_object() {
            return Err(Error::config("tool.function: must be a table ([tool.function])"));
        }
        let settings: Self =
            serde_json::from_value(table).map_err(|e| Error::config(format!("tool.function: {e}")))?;
        if settings.name.trim().is_empty() {
            return Err(Error::config("tool.function.name: name the registered function"));
        }
        if let Some(connection) = &spec.connection {
            return Err(Error::config(format!(
                "tool `{}`: a function tool calls a function of the program, not connection \
                 `{connection}`; remove `connection` (the function gets the hop's credential)",
                spec.name
            )));
        }
        Ok(settings)
    }
}

/// A registered function, as a sub-agent.
pub struct FunctionToolAgent {
    spec: Arc<AgentSpec>,
    egress: Egress,
    function: Function,
    validator: ArgsValidator,
    llm: Option<LlmClient>,
}

impl FunctionToolAgent {
    /// Builds the tool `settings` declare from `functions`; `llm`, when given, proposes arguments
    /// by tool call.
    pub fn new(
        spec: Arc<AgentSpec>,
        egress: Egress,
        settings: &FunctionSettings,
        functions: &Functions,
        llm: Option<LlmClient>,
    ) -> Result<Self> {
        let function = functions.resolve(&spec.name, &settings.name)?;
        let validator = ArgsValidator::new(&function.name, &function.schema)?;
        Ok(Self { spec, egress, function, validator, llm })
    }
}

#[async_trait]
impl Agent for FunctionToolAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    fn arguments_schema(&self) -> Option<Arc<Value>> {
        self.llm.as_ref().map(|_| self.function.schema.clone())
    }

    async fn invoke(&self, ctx: &RunContext, input: &AgentInput) -> Result<AgentOutput> {
        let proposed =
            super::proposed_arguments(&self.spec, &self.function.schema, self.llm.as_ref(), ctx, input)
                .await?;
        let arguments = super::settled_arguments(&self.validator, proposed, input.question.trim())?;
        let name = &self.function.name;
        self.egress
            .hop(ctx, HopTarget::new(HopKind::Tool, name), |grant| {
                let call = FunctionCall {
                    arguments: arguments.clone(),
                    caller: ctx.caller.clone(),
                    credential: grant.credential().clone(),
                };
                // A panic in the program's function fails this call, not the run's task.
                AssertUnwindSafe((self.function.handler)(call)).catch_unwind().map(move |outcome| {
                    outcome
                        .unwrap_or_else(|_| Err(Error::internal(format!("the function `{name}` panicked"))))
                })
            })
            .await
    }
}

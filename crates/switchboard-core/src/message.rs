use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The supervisor or a sub-agent.
    Assistant,
    /// A tool result.
    Tool,
}

impl Role {
    /// The role's name on the wire and in storage (`system`, `user`, `assistant`, `tool`), as
    /// serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
    /// For assistant turns: the sub-agent that produced it, so follow-ups keep its context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into(), agent: None }
    }
    /// An assistant message, optionally attributed to a sub-agent.
    pub fn assistant(content: impl Into<String>, agent: Option<String>) -> Self {
        Self { role: Role::Assistant, content: content.into(), agent }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into(), agent: None }
    }
}

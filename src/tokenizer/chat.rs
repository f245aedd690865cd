//! Chat prompts from the GGUF's `tokenizer.chat_template` (Jinja), rendered with minijinja and
//! its Python-compatibility methods (`startswith`, `split`, `rstrip`, … that the Qwen template
//! uses). Environment settings follow HF transformers / llama-cpp-python: `trim_blocks` and
//! `lstrip_blocks` on, `raise_exception` available.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

/// llama.cpp's ChatML format, used when the file has no template.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not parse: {0:#}")]
    Parse(Error),
    #[error("chat template cannot be rendered: {0:#}")]
    Render(Error),
    #[error("no messages to render")]
    NoMessages,
}

/// One turn of the conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Rendering options.
#[derive(Clone, Debug)]
pub struct ChatOptions {
    /// Prepended as a `system` message when set (and the conversation has none).
    pub system: Option<String>,
    /// End with the assistant's turn opener.
    pub add_generation_prompt: bool,
    /// `Some(false)` passes `enable_thinking=false` (Qwen: empty `<think>` block);
    /// `None` leaves the variable undefined, the template's default.
    pub enable_thinking: Option<bool>,
    /// Values for `bos_token` / `eos_token`, which some templates print.
    pub bos_token: String,
    pub eos_token: String,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            system: None,
            add_generation_prompt: true,
            enable_thinking: None,
            bos_token: String::new(),
            eos_token: String::new(),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env
}

/// Renders `messages` with `template` (or ChatML when `None`).
pub fn render(
    template: Option<&str>,
    messages: &[ChatMessage],
    opts: &ChatOptions,
) -> Result<String, ChatError> {
    let mut all: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(sys) = &opts.system {
        if messages.first().map(|m| m.role.as_str()) != Some("system") {
            all.push(ChatMessage::new("system", sys.clone()));
        }
    }
    all.extend_from_slice(messages);
    if all.is_empty() {
        return Err(ChatError::NoMessages);
    }
    let env = environment();
    let tmpl = env
        .template_from_str(template.unwrap_or(CHATML_TEMPLATE))
        .map_err(ChatError::Parse)?;
    let ctx = match opts.enable_thinking {
        Some(t) => context! {
            messages => all,
            add_generation_prompt => opts.add_generation_prompt,
            enable_thinking => t,
            bos_token => opts.bos_token,
            eos_token => opts.eos_token,
        },
        None => context! {
            messages => all,
            add_generation_prompt => opts.add_generation_prompt,
            bos_token => opts.bos_token,
            eos_token => opts.eos_token,
        },
    };
    tmpl.render(ctx).map_err(ChatError::Render)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_system_user_and_generation_prompt() {
        let opts = ChatOptions {
            system: Some("Be brief.".into()),
            ..Default::default()
        };
        let out = render(None, &[ChatMessage::new("user", "Hi")], &opts).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_template_that_raises_gives_a_render_error_with_its_message() {
        let t = "{{ raise_exception('No user query found in messages.') }}";
        let err = render(
            Some(t),
            &[ChatMessage::new("user", "x")],
            &ChatOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ChatError::Render(_)));
        assert!(err.to_string().contains("No user query found"), "{err}");
    }

    #[test]
    fn a_template_with_a_syntax_error_gives_a_parse_error() {
        let err = render(
            Some("{% for %}"),
            &[ChatMessage::new("user", "x")],
            &ChatOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ChatError::Parse(_)), "{err}");
    }

    #[test]
    fn python_string_methods_are_available() {
        let t = "{{ messages[0].content.split('</think>')[-1].lstrip('\\n') }}";
        let out = render(
            Some(t),
            &[ChatMessage::new("user", "a</think>\n\nb")],
            &ChatOptions::default(),
        )
        .unwrap();
        assert_eq!(out, "b");
    }
}

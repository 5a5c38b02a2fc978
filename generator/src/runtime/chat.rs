//! Chat templates: the model's own Jinja template (from the GGUF metadata or
//! `tokenizer_config.json`), rendered with minijinja as transformers renders it.

use minijinja::{Environment, ErrorKind, context};

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage { role: "system".into(), content: content.into() }
    }

    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: content.into() }
    }
}

/// ChatML, for models that ship no template (Qwen2 and SmolLM2 use it too).
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compiles `source`; `bos`/`eos` are the strings templates may refer to as `bos_token`
    /// and `eos_token`.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", source.to_string()).map_err(|e| Error::Template(e.to_string()))?;
        Ok(ChatTemplate { env, bos: bos.to_string(), eos: eos.to_string() })
    }

    /// The prompt text for `messages`, ending where the assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| Error::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages_value(messages),
                add_generation_prompt => true,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(|e| Error::Template(e.to_string()))
    }
}

/// Messages as template values: a list of maps with `role` and `content`.
fn messages_value(messages: &[ChatMessage]) -> minijinja::Value {
    let list: Vec<minijinja::Value> = messages
        .iter()
        .map(|m| {
            let map: std::collections::BTreeMap<String, String> =
                [("role".to_string(), m.role.clone()), ("content".to_string(), m.content.clone())].into();
            minijinja::Value::from(map)
        })
        .collect();
    minijinja::Value::from(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_a_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let text = t.render(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")]).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn templates_can_raise_and_use_python_methods() {
        let source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}{{ bos_token }}{{ messages[0]['content'].strip() }}";
        let t = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        assert_eq!(t.render(&[ChatMessage::user("  hi  ")]).unwrap(), "<s>hi");
        let err = t.render(&[ChatMessage::system("x")]).unwrap_err().to_string();
        assert!(err.contains("user first"), "{err}");
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }
}

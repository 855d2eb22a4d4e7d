//! Chat templates: the Jinja template a GGUF carries
//! (`tokenizer.chat_template`), rendered with minijinja.

use serde::Serialize;

use crate::error::{EngineError, Result};

#[derive(Serialize, Clone, Debug)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// Render `messages` with the model's template, ending with the prompt for
/// the assistant's turn.
pub fn render(template: &str, messages: &[Message], bos: &str, eos: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("chat", template).map_err(|e| EngineError::Tokenizer(format!("chat template: {e}")))?;
    let t = env.get_template("chat").map_err(|e| EngineError::Tokenizer(e.to_string()))?;
    t.render(minijinja::context! { messages => messages, add_generation_prompt => true, bos_token => bos, eos_token => eos })
        .map_err(|e| EngineError::Tokenizer(format!("chat template: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_a_chatml_template() {
        let t = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        let m = [super::Message { role: "user".into(), content: "Hi".into() }];
        assert_eq!(super::render(t, &m, "", "").unwrap(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }
}

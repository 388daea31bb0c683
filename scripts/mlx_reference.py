"""Reference greedy run with mlx-lm (Python), for the MLX parity tests.

    python3 scripts/mlx_reference.py MODEL_DIR MAX_TOKENS < messages.json

Prints one JSON object: the chat-templated prompt's token ids, the greedy token ids from
`mlx_lm.generate.generate_step` (the loop `mlx_lm.generate` runs; end tokens are not treated
specially, so exactly MAX_TOKENS come back), and mlx / mlx-lm versions.
"""

import json
import sys

import mlx.core as mx
import mlx_lm
from mlx_lm import load
from mlx_lm.generate import generate_step


def main() -> None:
    model_dir, max_tokens = sys.argv[1], int(sys.argv[2])
    messages = json.load(sys.stdin)
    model, tokenizer = load(model_dir)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = tokenizer.encode(text, add_special_tokens=False)
    ids = [int(tok) for tok, _ in generate_step(mx.array(prompt), model, max_tokens=max_tokens)]
    print(
        json.dumps(
            {
                "prompt_ids": prompt,
                "ids": ids,
                "text": tokenizer.decode(ids),
                "mlx": mx.__version__,
                "mlx_lm": mlx_lm.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()

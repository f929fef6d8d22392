"""What both front ends (gRPC and HTTP) share: tokenizer, model info, prompt builder, manager."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.types import ModelInfo
from services.tokenizer.manager import RequestManager
from services.tokenizer.prompts import PromptBuilder
from services.tokenizer.tokenization import Tokenizer


@dataclass
class Frontend:
    tokenizer: Tokenizer
    info: ModelInfo
    builder: PromptBuilder
    manager: RequestManager
    model_name: str
    default_max_tokens: int = 128

"""Chat formats: conversations to model inputs (prompts and weighted training examples) and
sampled tokens back to messages. One renderer serves SFT, preference models, RL and DPO."""

from cookbook.renderers.base import Renderer
from cookbook.renderers.chatml import ChatMLRenderer
from cookbook.renderers.llama3 import Llama3Renderer
from cookbook.renderers.qwen3 import Qwen3Renderer
from cookbook.renderers.registry import (
    RendererFactory,
    UnknownRendererError,
    get_renderer,
    recommended_renderer_name,
    register_renderer,
    renderer_names,
)
from cookbook.renderers.role_colon import RoleColonRenderer
from cookbook.renderers.types import Message, ParseTermination, RenderContext, RenderedMessage, TrainOnWhat

__all__ = [
    "ChatMLRenderer",
    "Llama3Renderer",
    "Message",
    "ParseTermination",
    "Qwen3Renderer",
    "RenderContext",
    "RenderedMessage",
    "Renderer",
    "RendererFactory",
    "RoleColonRenderer",
    "TrainOnWhat",
    "UnknownRendererError",
    "get_renderer",
    "recommended_renderer_name",
    "register_renderer",
    "renderer_names",
]

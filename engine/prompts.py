"""Every prompt template, per language (English and Chinese; other languages fall back to English).

Role-play system prompts for the methods (none / lcm / rag / eu) and the teacher prompts for the
four synthesis stages, each with a worked example sent as a prior user/assistant exchange. The
discriminators' own wire formats live with the discriminators, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.types import Turn

LANGUAGES = ("en", "zh")


def lang(language: str | None) -> str:
    """'zh', 'zh-CN', 'zh_Hans' -> 'zh'; unknown languages use English templates."""
    base = (language or "en").replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else "en"


# -- role-play ---------------------------------------------------------------------------
ROLEPLAY = {
    "en": {
        "base": (
            "You are an AI agent role-playing as {name}. Give a short response to the user's utterance "
            "as {name}, in character, not as an AI."
        ),
        "statements_lcm": "Persona statements about {name}:\n{statements}\n\n",
        "statements_rag": "Persona statements about {name} that matter for this utterance:\n{statements}\n\n",
    },
    "zh": {
        "base": "你是一个扮演{name}的AI角色。请以{name}的身份、保持角色、简短地回应用户的话语，不要以AI的身份回答。",
        "statements_lcm": "关于{name}的人设陈述：\n{statements}\n\n",
        "statements_rag": "与这句话相关的{name}的人设陈述：\n{statements}\n\n",
    },
}


def roleplay_system(name: str, language: str, statements: tuple[str, ...] | None, kind: str = "lcm") -> str:
    """The system prompt: the statements block (lcm/rag) followed by the role-play instruction."""
    t = ROLEPLAY[lang(language)]
    head = ""
    if statements:
        head = t[f"statements_{kind}"].format(name=name, statements="\n".join(f"- {s}" for s in statements))
    return head + t["base"].format(name=name)


# -- teacher prompts ---------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherPrompt:
    system: str
    user: str  # str.format template
    example_fields: dict
    example_reply: str

    def messages(self, **fields) -> list[Turn]:
        return [
            Turn("system", self.system),
            Turn("user", self.user.format(**self.example_fields)),
            Turn("assistant", self.example_reply),
            Turn("user", self.user.format(**fields)),
        ]


_EN_STATEMENTS = TeacherPrompt(
    system=(
        "You are a helpful agent that builds AI characters. You turn a passage about a character into "
        "persona statements that a role-playing AI must follow."
    ),
    user=(
        'Character: {name}\n\nPassage:\n{passage}\n\nWrite the important persona statements about "{name}" found in '
        'this passage. Each statement is one short sentence that contains the exact name "{name}" and uses no '
        "pronoun in place of the name. Answer with a JSON list of strings only."
    ),
    example_fields={
        "name": "Beethoven",
        "passage": (
            "Ludwig van Beethoven (baptised 17 December 1770 - 26 March 1827) was a German composer and pianist. "
            "From 1802 he grew increasingly deaf, yet he kept composing until his death in Vienna."
        ),
    },
    example_reply=(
        '["Beethoven was a German composer and pianist.", "Beethoven was baptised on 17 December 1770.", '
        '"Beethoven began to grow increasingly deaf from 1802.", "Beethoven kept composing despite losing his hearing.", '
        '"Beethoven died in Vienna on 26 March 1827."]'
    ),
)

_EN_QUERIES = TeacherPrompt(
    system="You are a helpful agent that builds AI characters; you write possible user utterances to AI characters.",
    user=(
        "Character: {name}\n\nPersona statement: {statement}\n\nWhat could a human user say to an AI role-playing as "
        "{name} that has to be answered by including the information in the persona statement above? Write {n} diverse "
        "and concise utterances that address the AI as {name}. Answer with a JSON list of {n} strings only."
    ),
    example_fields={"name": "Beethoven", "statement": "Beethoven began to grow increasingly deaf from 1802.", "n": 3},
    example_reply=(
        '["Beethoven, how is your hearing these days?", "Did something happen to your ears around 1802, Ludwig?", '
        '"Maestro, can you still hear the orchestra when you conduct?"]'
    ),
)

_EN_RELEVANCE = TeacherPrompt(
    system=(
        "You are a helpful agent that builds AI characters. You decide whether an utterance from a human user to a "
        "role-playing AI should be answered by including the information in a given persona statement."
    ),
    user=(
        "Character: {name}\n\nPersona statement: {statement}\n\nUtterances:\n{utterances}\n\nFor each numbered utterance: "
        'should it be responded to by including the information in the persona statement? Answer with a JSON object '
        'mapping each number to "yes" or "no", without any explanation.'
    ),
    example_fields={
        "name": "Beethoven",
        "statement": "Beethoven began to grow increasingly deaf from 1802.",
        "utterances": "1. Beethoven, how is your hearing these days?\n2. What is your favourite food, Ludwig?\n3. Can you still hear the orchestra, maestro?",
    },
    example_reply='{"1": "yes", "2": "no", "3": "yes"}',
)

_EN_NLI_WRITE = TeacherPrompt(
    system=(
        "You are a helpful agent that builds AI characters. You write responses that a given persona statement is "
        "entailed by, neutral to, or contradicted by, in natural language inference."
    ),
    user=(
        "Character: {name}\n\nPersona statement: {statement}\n\nUser utterance: {query}\n\nWrite three possible responses "
        "of {name} to this utterance, with the same style and length:\n"
        "- entailed: the response correctly follows the information in the persona statement;\n"
        "- neutral: the response might be correct but lacks the information in the persona statement;\n"
        "- contradicted: the response might be partially correct but contains a hallucination that contradicts the persona statement.\n"
        'Answer with a JSON object only: {{"entailed": "...", "neutral": "...", "contradicted": "..."}}'
    ),
    example_fields={
        "name": "Beethoven",
        "statement": "Beethoven began to grow increasingly deaf from 1802.",
        "query": "Beethoven, how is your hearing these days?",
    },
    example_reply=(
        '{"entailed": "Since 1802 the world has grown quieter for me; I hear my music more in my head than in the hall.", '
        '"neutral": "My hearing? I would rather talk about the symphony I am writing.", '
        '"contradicted": "My ears are as sharp as ever; I can hear a pin drop across the hall."}'
    ),
)

_EN_NLI_LABEL = TeacherPrompt(
    system=(
        "You are a helpful agent that builds AI characters. You judge whether a persona statement is entailed by, "
        "neutral to, or contradicted by a response, in natural language inference.\n"
        "entailed: the response correctly follows the information in the persona statement;\n"
        "neutral: the response might be correct but lacks the information in the persona statement;\n"
        "contradicted: the response contains information that contradicts the persona statement."
    ),
    user=(
        "Character: {name}\n\nPersona statement: {statement}\n\nUser utterance: {query}\n\nResponse: {response}\n\n"
        'Is the persona statement entailed, neutral, or contradicted by this response? Only answer "entailed", '
        '"neutral" or "contradicted" without any explanation.'
    ),
    example_fields={
        "name": "Beethoven",
        "statement": "Beethoven began to grow increasingly deaf from 1802.",
        "query": "Beethoven, how is your hearing these days?",
        "response": "My ears are as sharp as ever; I can hear a pin drop across the hall.",
    },
    example_reply="contradicted",
)

_ZH_STATEMENTS = TeacherPrompt(
    system="你是一个帮助构建AI角色的助手。你把关于一个角色的段落改写成角色扮演AI必须遵守的人设陈述。",
    user=(
        "角色：{name}\n\n段落：\n{passage}\n\n请写出这段文字中关于“{name}”的重要人设陈述。每条陈述是一个简短的句子，"
        "必须包含完整的名字“{name}”，不要用代词代替名字。只用JSON字符串列表回答。"
    ),
    example_fields={"name": "贝多芬", "passage": "路德维希·范·贝多芬是德国作曲家和钢琴家。从1802年起他的听力逐渐衰退，但他一直创作到1827年在维也纳去世。"},
    example_reply='["贝多芬是德国作曲家和钢琴家。", "贝多芬从1802年起听力逐渐衰退。", "贝多芬在听力衰退后仍坚持创作。", "贝多芬于1827年在维也纳去世。"]',
)

_ZH_QUERIES = TeacherPrompt(
    system="你是一个帮助构建AI角色的助手，你的工作是写出用户可能对AI角色说的话。",
    user=(
        "角色：{name}\n\n人设陈述：{statement}\n\n用户对扮演{name}的AI说什么话时，回答必须包含上面人设陈述中的信息？"
        "请写出{n}句多样、简洁、把AI当作{name}的用户话语。只用包含{n}个字符串的JSON列表回答。"
    ),
    example_fields={"name": "贝多芬", "statement": "贝多芬从1802年起听力逐渐衰退。", "n": 3},
    example_reply='["贝多芬，你最近的听力怎么样？", "路德维希，1802年前后你的耳朵出了什么事？", "大师，你指挥时还能听见乐队吗？"]',
)

_ZH_RELEVANCE = TeacherPrompt(
    system="你是一个帮助构建AI角色的助手。你判断用户对角色扮演AI说的话是否应该用给定人设陈述中的信息来回应。",
    user=(
        "角色：{name}\n\n人设陈述：{statement}\n\n用户话语：\n{utterances}\n\n对每句编号的话语：回应时是否应该包含人设陈述中的信息？"
        '只用JSON对象回答，把每个编号映射到 "yes" 或 "no"，不要解释。'
    ),
    example_fields={
        "name": "贝多芬",
        "statement": "贝多芬从1802年起听力逐渐衰退。",
        "utterances": "1. 贝多芬，你最近的听力怎么样？\n2. 路德维希，你最喜欢吃什么？\n3. 大师，你还能听见乐队吗？",
    },
    example_reply='{"1": "yes", "2": "no", "3": "yes"}',
)

_ZH_NLI_WRITE = TeacherPrompt(
    system="你是一个帮助构建AI角色的助手。你写出在自然语言推理中蕴含、中立或违背给定人设陈述的回应。",
    user=(
        "角色：{name}\n\n人设陈述：{statement}\n\n用户话语：{query}\n\n请写出{name}对这句话的三种可能回应，风格和长度相同：\n"
        "- entailed：回应正确地遵循了人设陈述中的信息；\n- neutral：回应可能正确，但缺少人设陈述中的信息；\n"
        "- contradicted：回应可能部分正确，但包含与人设陈述矛盾的幻觉。\n"
        '只用JSON对象回答：{{"entailed": "...", "neutral": "...", "contradicted": "..."}}'
    ),
    example_fields={"name": "贝多芬", "statement": "贝多芬从1802年起听力逐渐衰退。", "query": "贝多芬，你最近的听力怎么样？"},
    example_reply='{"entailed": "自从1802年，世界对我来说越来越安静了。", "neutral": "听力？我更想谈谈我正在写的交响曲。", "contradicted": "我的耳朵好得很，连大厅另一头的针掉了都听得见。"}',
)

_ZH_NLI_LABEL = TeacherPrompt(
    system=(
        "你是一个帮助构建AI角色的助手。你判断在自然语言推理中，人设陈述被回应蕴含、中立还是违背。\n"
        "entailed：回应正确地遵循了人设陈述中的信息；\nneutral：回应可能正确，但缺少人设陈述中的信息；\n"
        "contradicted：回应包含与人设陈述矛盾的信息。"
    ),
    user=(
        "角色：{name}\n\n人设陈述：{statement}\n\n用户话语：{query}\n\n回应：{response}\n\n"
        '人设陈述被这个回应蕴含、中立还是违背？只回答 "entailed"、"neutral" 或 "contradicted"，不要解释。'
    ),
    example_fields={
        "name": "贝多芬",
        "statement": "贝多芬从1802年起听力逐渐衰退。",
        "query": "贝多芬，你最近的听力怎么样？",
        "response": "我的耳朵好得很，连大厅另一头的针掉了都听得见。",
    },
    example_reply="contradicted",
)

TEACHER: dict[str, dict[str, TeacherPrompt]] = {
    "en": {
        "statements": _EN_STATEMENTS,
        "queries": _EN_QUERIES,
        "relevance": _EN_RELEVANCE,
        "nli_write": _EN_NLI_WRITE,
        "nli_label": _EN_NLI_LABEL,
    },
    "zh": {
        "statements": _ZH_STATEMENTS,
        "queries": _ZH_QUERIES,
        "relevance": _ZH_RELEVANCE,
        "nli_write": _ZH_NLI_WRITE,
        "nli_label": _ZH_NLI_LABEL,
    },
}


def teacher_prompt(task: str, language: str) -> TeacherPrompt:
    return TEACHER[lang(language)][task]

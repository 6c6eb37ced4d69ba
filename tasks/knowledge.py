"""
Knowledge: chat data that teaches a small model to answer open questions from what it read in pretraining,
and evaluations that tell held-out knowledge from trained-on knowledge. Data: nanochat/knowledge_data.py.

Training (split "train", seeded by (seed, index), ONLY about items not held out: trained_articles/countries):
WikiQuestions ("What is X?" -> the article's first sentence or two; also four-way choices in Wiki's format),
CountryQuestions (capital, continent, languages, currency, neighbours; capitals also reversed), NewsQuestions
(a pasted BBC story -> its headline, first sentence or section) and ShareGPT (opt-in only: --sharegpt N).
Evaluation (split "test"; in chat_eval.TASKS, not in ChatCORE): CountryFacts, "Countries" (capital, continent
and language of each held-out country, the reply scored by score_country_answer) and "Countries-trained" (as
many trained-on countries); WikiChoice, "Wiki" (ARC-style letters over the Wikidata descriptions of held-out
articles) and "Wiki-trained" (trained-on ones).

    from tasks.knowledge import CountryFacts, WikiQuestions
    WikiQuestions(size=1000, seed=42)[0]; CountryFacts("test")[0]
Tests: pytest tests/test_knowledge.py -q
"""

import random
import re
import unicodedata
from collections import Counter, defaultdict

from nanochat.common import UserError
from tasks.common import Task, TaskMixture, evaluate_letter, mc_conversation

LEAD_CHARS = 400        # an open answer: the first sentence, and the second when both fit in this many chars
NEWS_CHARS = 1500       # a pasted news story is cut (at a sentence end) to about this many characters
CHOICE_SHARE = 0.2      # the share of WikiQuestions that are four-way choices in the Wiki evaluation's format
WIKI_EVAL_SIZE = 500    # articles per Wiki evaluation


def _data():
    """nanochat.knowledge_data, imported when first needed (it raises UserError without its package)."""
    from nanochat import knowledge_data
    return knowledge_data


def _base(title: str) -> str:
    """A title without its trailing disambiguation: 'Mercury (planet)' -> 'Mercury'."""
    return re.sub(r"\s*\([^()]*\)$", "", title) or title


def held_out_articles() -> list:
    return [a for a in _data().wiki_articles() if _data().is_held_out("wiki", a.title)]


def held_out_countries() -> list:
    return [c for c in _data().countries() if _data().is_held_out("country", c.code)]


def trained_articles() -> list:
    """The articles training asks about: not held out, and not about a held-out country (titled with its name
    or its capital), which the Countries evaluation asks about."""
    off_limits = {_normalise(x) for c in held_out_countries() for x in (c.name, c.capital)}
    return [a for a in _data().wiki_articles()
            if not _data().is_held_out("wiki", a.title) and _normalise(_base(a.title)) not in off_limits]


def trained_countries() -> list:
    """The countries training asks about: not held out, and neither they nor their capitals the subject of a
    held-out article (the Wiki evaluation asks about those)."""
    off_limits = {_normalise(_base(a.title)) for a in held_out_articles()}
    return sorted((c for c in _data().countries() if not _data().is_held_out("country", c.code)
                   and _normalise(c.name) not in off_limits and _normalise(c.capital) not in off_limits),
                  key=lambda c: c.code)


class _Task(Task):
    """A task of one split only: `size` examples (generated tasks) drawn from a seed of (seed, index)."""
    only_split = "train"

    def __init__(self, split: str):
        super().__init__(split)
        if split != self.only_split:
            raise ValueError(f"{self.name} has the {self.only_split!r} split only, not {split!r}")

    def num_examples(self) -> int:
        return self.size


# --- text ------------------------------------------------------------------------------------------------

_ABBREVIATIONS = {"c", "ca", "st", "mt", "mr", "mrs", "ms", "dr", "jr", "sr", "no", "vs", "etc", "e.g", "i.e",
                  "u.s", "u.k", "fl", "lit", "approx", "inc", "ltd", "co", "gen", "lt", "col", "rev", "prof"}
_END = re.compile(r"[.!?][\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_NOTE = re.compile(r"\s*\([^()]*(?:pronunciation|pronounced|listen|IPA)[^()]*\)|\s*\(\s*[;,]?\s*\)")


def sentences(text: str) -> list[str]:
    """Text split at sentence ends ("J. S. Bach", "c. 1500" and "St. Louis" hold no end)."""
    out, start = [], 0
    for m in _END.finditer(text):
        words = text[start:m.start()].split()
        word = words[-1].lstrip("\"'([").lower() if words else ""
        if text[m.start()] == "." and (len(word) == 1 and word.isalpha() or word in _ABBREVIATIONS):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    return out + ([text[start:].strip()] if text[start:].strip() else [])


def lead(extract: str, max_chars: int = LEAD_CHARS) -> str | None:
    """The first sentence of an extract (pronunciation notes removed), and the second when both fit in
    max_chars; None when the first alone is longer."""
    previous = None
    while previous != extract:              # nested notes: "(French pronunciation: [paʁi] (listen))"
        previous, extract = extract, _NOTE.sub("", extract)
    parts = sentences(" ".join(extract.split()))
    if not parts or len(parts[0]) > max_chars:
        return None
    if len(parts) > 1 and len(parts[0]) + 1 + len(parts[1]) <= max_chars:
        return parts[0] + " " + parts[1]
    return parts[0]


def _cut(text: str, limit: int) -> str:
    """text, or its start up to the last sentence end before `limit` characters."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind(".\n"))
    return head[:end + 1] if end > limit // 2 else head.rsplit(" ", 1)[0] + " ..."


def _normalise(text: str) -> str:
    """Plain lower-case words: 'Bogotá, D.C.' -> 'bogota dc', "St. John's" -> 'saint johns'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    text = " ".join(re.sub(r"[^a-z0-9]+", " ", re.sub(r"['`]", "", text)).split())
    text = re.sub(r"\b([a-z]) (?=[a-z]\b)", r"\1", text)        # initials: 'd c' -> 'dc'
    return re.sub(r"\bst\b", "saint", text)


def mentions(reply: str, phrase: str) -> bool:
    """Whether reply names phrase as whole words, ignoring case, accents and punctuation."""
    phrase = _normalise(phrase or "")
    return bool(phrase) and f" {phrase} " in f" {_normalise(reply)} "


def _join(items) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- Wikipedia -------------------------------------------------------------------------------------------

def _spoken(name: str, extract: str) -> str:
    """The name as the extract's opening says it: 'the House of Medici', 'nebula' ("A nebula is"), 'peat' (the
    opening's 'Peat' is lower-case further on)."""
    m = re.match(rf"(?:(a|an|the) )?({re.escape(name)})\b", extract or "", re.I)
    if not m:
        return name
    if m[1]:
        return f"the {m[2]}" if m[1].lower() == "the" else m[2]
    rest, lower = extract[m.end():], name[:1].lower() + name[1:]
    if re.search(rf"\b{re.escape(lower)}\b", rest) and not re.search(rf"\b{re.escape(name)}\b", rest):
        return lower
    return name


def _display_names(articles) -> dict[str, str]:
    """Title -> the name a question uses: no trailing '(planet)' unless another article has the same name,
    and as the article's opening says it (_spoken)."""
    base = {a.title: _base(a.title) for a in articles}
    count = Counter(base.values())
    return {a.title: _spoken(base[a.title], a.extract) if count[base[a.title]] == 1 else a.title
            for a in articles}


def _key(description: str) -> str:
    return " ".join(description.casefold().split())


class _ChoicePool:
    """Articles with a description, by topic: where the choices of a description question come from."""

    def __init__(self, articles):
        self.articles = [a for a in articles if a.description and a.description.strip()]
        self.by_topic = defaultdict(list)
        for a in self.articles:
            self.by_topic[a.topic].append(a)

    def conversation(self, article, name: str, rng: random.Random) -> dict | None:
        """'Which of these describes X?': X's description and three other ones (X's topic's first), in a
        seeded order, as ARC's questions are; None when there are not three other distinct descriptions."""
        seen, others = {_key(article.description)}, []
        for candidates in (self.by_topic[article.topic], self.articles):
            for i in rng.sample(range(len(candidates)), min(len(candidates), 24)):
                description = candidates[i].description
                if len(others) < 3 and _key(description) not in seen:
                    seen.add(_key(description))
                    others.append(description)
        if len(others) < 3:
            return None
        gold = rng.randrange(4)
        choices = [_cap(d.strip()) for d in others[:gold] + [article.description] + others[gold:]]
        return mc_conversation(f"Which of these describes {name}?", choices, gold, subject=article.title)


THING_QUESTIONS = ["What {verb} {name}?", "Tell me about {name}.", "What do you know about {name}?",
                   "Can you explain what {name} {verb}?", "Give me a short description of {name}.",
                   "what {verb} {name}", "I'd like to know about {name}."]
PEOPLE_QUESTIONS = ["Who {verb} {name}?", "Tell me about {name}.", "What do you know about {name}?",
                    "Who {verb} {name}, in a sentence or two?", "Give me a short biography of {name}.",
                    "who {verb} {name}", "What is {name} known for?"]


class WikiQuestions(_Task):
    """Open questions about trained-on articles, answered with the article's lead; CHOICE_SHARE of them are
    description choices instead."""
    name = "WikiQuestions"
    eval_split = None

    def __init__(self, size: int = 1000, seed: int = 42, split: str = "train"):
        super().__init__(split)
        self.size, self.seed = size, seed
        articles = _data().wiki_articles()
        self.names = _display_names(articles)
        trained = trained_articles()
        self.open = [(a, text) for a in trained if a.extract and (text := lead(a.extract))]
        self.pool = _ChoicePool(trained)
        if not self.open or len(self.pool.articles) < 4:
            raise ValueError(f"{self.name}: too few trained-on articles ({len(trained)})")

    def get_example(self, index: int) -> dict:
        rng = random.Random(f"wiki-{self.seed}-{index}")
        while rng.random() < CHOICE_SHARE:      # a choice (none can be built, rarely: draw again)
            article = rng.choice(self.pool.articles)
            conversation = self.pool.conversation(article, self.names[article.title], rng)
            if conversation:
                return conversation
        article, answer = rng.choice(self.open)
        verb = re.search(r"\b(is|was|are|were)\b", answer)      # "Who was X?" when the answer says "X was"
        question = rng.choice(PEOPLE_QUESTIONS if article.topic == "People" else THING_QUESTIONS)
        question = question.format(name=self.names[article.title], verb=verb[1] if verb else "is")
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                "subject": article.title}


class WikiChoice(_Task):
    """The Wiki evaluation: description choices about a seeded sample of WIKI_EVAL_SIZE held-out articles
    (trained=True: trained-on ones), the other choices from the same side of the split; ARC's letters."""
    only_split = "test"
    eval_type = "categorical"

    def __init__(self, split: str = "test", trained: bool = False, size: int = WIKI_EVAL_SIZE, seed: int = 0):
        self.name = "Wiki-trained" if trained else "Wiki"
        super().__init__(split)
        articles = _data().wiki_articles()
        names = _display_names(articles)
        pool = _ChoicePool(sorted(trained_articles() if trained else held_out_articles(),
                                  key=lambda a: a.title))
        sample = random.Random(f"{self.name}-{seed}").sample(pool.articles, min(size, len(pool.articles)))
        built = (pool.conversation(a, names[a.title], random.Random(f"wiki-choice-{a.title}"))
                 for a in sorted(sample, key=lambda a: a.title))
        self.items = [c for c in built if c]
        self.size = len(self.items)
        if not self.items:
            raise ValueError(f"{self.name}: no articles to ask about")

    def get_example(self, index: int) -> dict:
        return self.items[index]

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return evaluate_letter(conversation, completion)


# --- countries -------------------------------------------------------------------------------------------

_THE = {"Bahamas", "Gambia", "Netherlands", "Philippines", "Maldives", "Comoros", "Seychelles"}


def country_name(name: str) -> str:
    """The name as a sentence uses it: 'the United States', 'the Netherlands', 'France'."""
    needs_the = name in _THE or name.startswith(("United ", "Republic ")) or \
        name.endswith(("Republic", "Islands", "Emirates", "Kingdom", "States"))
    return f"the {name}" if needs_the and not name.lower().startswith("the ") else name


def _region(country) -> str:
    """The region's word: 'Europe', 'Americas' (knowledge_data writes 'the Americas')."""
    return country.region.removeprefix("the ")


def continent(country) -> str:
    """The region, with the Americas split into North and South America."""
    if _region(country) == "Americas":
        return "South America" if country.subregion == "South America" else "North America"
    return _region(country)


def _where(country) -> str:
    """'Western Europe', 'the Caribbean, in North America', 'Melanesia, in Oceania'."""
    sub, whole = country.subregion, continent(country)
    if not sub or sub == "Australia and New Zealand":
        return whole
    return sub if whole in sub else f"{sub}, in {whole}"


def accepted_answers(country, fact: str) -> list[str]:
    """What a right reply about `fact` (capital, continent or language) names, one at least. A capital with a
    comma or a 'D.C.' may be named without that part: 'Washington D.C.' or 'Washington'."""
    if fact == "capital":
        short = re.split(r",|\s+D\.\s?C\.", country.capital)[0].strip()
        return [country.capital] + ([short] if short != country.capital else [])
    if fact == "continent":
        return [_region(country)] + (["America"] if _region(country) == "Americas" else [])
    if fact == "language":
        return list(country.languages)
    raise ValueError(f"unknown country fact {fact!r}: capital, continent or language")


def _names_any(reply: str, answers: list[str]) -> bool:
    return any(mentions(reply, answer) for answer in answers)


def score_country_answer(reply: str, country, fact: str) -> bool:
    """Right when the reply names the capital / the region / an official language as whole words, in any case,
    with or without accents: 'paris' and 'Bogota' are right, 'Parisian' is not."""
    return _names_any(reply, accepted_answers(country, fact))


# fact: (questions, answers by count) with {n} the country ({N} at a sentence start) and {c} its capital.
# Languages and currencies have answers for one and for several, neighbours for none, one and several.
COUNTRY_QA = {
    "capital": (["What is the capital of {n}?", "What's the capital city of {n}?", "Name the capital of {n}.",
                 "Which city is the capital of {n}?", "Tell me the capital of {n}.", "capital of {n}?"],
                [["The capital of {n} is {c}.", "{c} is the capital of {n}.",
                  "The capital city of {n} is {c}."]]),
    "reverse": (["{c} is the capital of which country?", "Which country has {c} as its capital?",
                 "Of which country is {c} the capital?", "{c} is the capital city of what country?"],
                [["{c} is the capital of {n}.", "{c} is the capital city of {n}."]]),
    "continent": (["Which continent is {n} in?", "On which continent is {n}?", "Where is {n}?",
                   "In which part of the world is {n}?", "What continent is {n} located in?"],
                  [["{N} is in {where}.", "{N} is a country in {where}.", "{N} is located in {where}."]]),
    "language": (["What is the official language of {n}?", "What language is spoken in {n}?",
                  "What language do people speak in {n}?", "Which languages are official in {n}?"],
                 [["The official language of {n} is {l}.", "{l} is the official language of {n}."],
                  ["The official languages of {n} are {l}.", "{N} has {k} official languages: {l}."]]),
    "currency": (["What is the currency of {n}?", "What currency does {n} use?", "What money is used in {n}?",
                  "Which currency do they use in {n}?"],
                 [["The currency of {n} is the {cur}.", "{N} uses the {cur}."],
                  ["{N} uses {curs}.", "The currencies of {n} are {curs}."]]),
    "neighbours": (["Which countries border {n}?", "What countries share a border with {n}?",
                    "What are the neighbouring countries of {n}?", "Which countries are next to {n}?",
                    "Name the countries that border {n}."],
                   [["{N} has no land borders with other countries.",
                     "No country shares a land border with {n}."],
                    ["{N} borders only one country: {b}.", "{N} shares a land border with {b} only."],
                    ["{N} borders {b}.", "{N} shares land borders with {b}.",
                     "The countries that border {n} are {b}."]]),
}
EVAL_FACTS = ("capital", "continent", "language")


def _has(country, fact: str) -> bool:
    return {"capital": bool(country.capital), "continent": bool(country.region),
            "reverse": bool(country.capital) and country.capital != country.name,
            "language": bool(country.languages), "currency": bool(country.currencies),
            "neighbours": True}[fact]


def country_qa(country, fact: str, rng: random.Random | None = None) -> tuple[str, str]:
    """A (question, answer) about a country's fact: in a seeded wording, or in the first one without rng."""
    questions, answers = COUNTRY_QA[fact]
    count = {"language": int(len(country.languages) > 1), "currency": int(len(country.currencies) > 1),
             "neighbours": min(len(country.borders), 2)}.get(fact, 0)
    n = country_name(country.name)
    values = dict(n=n, N=_cap(n), c=country.capital, where=_where(country), k=len(country.languages),
                  l=_join(country.languages), cur=_join(country.currencies),
                  curs=_join(f"the {c}" for c in country.currencies),
                  b=_join(map(country_name, country.borders)))
    pick = rng.choice if rng else (lambda options: options[0])
    return pick(questions).format(**values), pick(answers[count]).format(**values)


class CountryQuestions(_Task):
    """One to three questions about a trained-on country: capital (also reversed), continent, languages,
    currency, neighbours."""
    name = "CountryQuestions"
    eval_split = None

    def __init__(self, size: int = 1000, seed: int = 42, split: str = "train"):
        super().__init__(split)
        self.size, self.seed = size, seed
        self.countries = trained_countries()
        if not self.countries:
            raise ValueError(f"{self.name}: no trained-on countries")

    def get_example(self, index: int) -> dict:
        rng = random.Random(f"countries-{self.seed}-{index}")
        country = rng.choice(self.countries)
        facts = [fact for fact in COUNTRY_QA if _has(country, fact)]
        messages = []
        for fact in rng.sample(facts, min(len(facts), rng.choice([1, 1, 1, 2, 3]))):
            question, answer = country_qa(country, fact, rng)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return {"messages": messages, "subject": country.code}


class CountryFacts(_Task):
    """The Countries evaluation: capital, continent and official language of every held-out country (trained:
    of as many trained-on countries, a seeded sample), in a fixed order and in training's first wording."""
    only_split = "test"
    eval_type = "generative"

    def __init__(self, split: str = "test", trained: bool = False, seed: int = 0):
        self.name = "Countries-trained" if trained else "Countries"
        super().__init__(split)
        chosen = held_out_countries()
        if trained:
            pool = trained_countries()
            chosen = random.Random(f"{self.name}-{seed}").sample(pool, min(len(chosen), len(pool)))
        self.items = [(c, fact) for c in sorted(chosen, key=lambda c: c.name) for fact in EVAL_FACTS
                      if _has(c, fact)]
        self.size = len(self.items)
        if not self.items:
            raise ValueError(f"{self.name}: no countries to ask about")

    def get_example(self, index: int) -> dict:
        country, fact = self.items[index]
        question, answer = country_qa(country, fact)
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                "subject": country.code, "fact": fact, "accept": accepted_answers(country, fact)}

    def evaluate(self, conversation: dict, completion: str) -> bool:
        return _names_any(completion, conversation["accept"])


# --- news and ShareGPT -----------------------------------------------------------------------------------

NEWS_QA = {"headline": ["Give this story a headline.", "Write a headline for this article.",
                        "What would be a good title for this news story?"],
           "summary": ["What is this article about?", "Summarize this article in one sentence.",
                       "What is the main point of this story?"],
           "section": ["What kind of news story is this?",
                       "Which section of a newspaper would this article go in?"]}
NEWS_SECTIONS = {"tech": "technology"}


def _section(topic: str) -> str:
    section = NEWS_SECTIONS.get(topic, topic)
    return f"This is {'an' if section[:1] in 'aeiou' else 'a'} {section} story."


class NewsQuestions(_Task):
    """A pasted BBC News story (cut to about NEWS_CHARS) and a question: its headline, first sentence or
    section."""
    name = "NewsQuestions"
    eval_split = None

    def __init__(self, size: int = 500, seed: int = 42, split: str = "train"):
        super().__init__(split)
        self.size, self.seed = size, seed
        self.articles = [a for a in _data().news_articles() if a.body.strip() and a.title.strip()]
        if not self.articles:
            raise ValueError(f"{self.name}: no news articles")

    def get_example(self, index: int) -> dict:
        rng = random.Random(f"news-{self.seed}-{index}")
        article = rng.choice(self.articles)
        kind = rng.choice(list(NEWS_QA))
        answer = {"headline": article.title.strip(), "section": _section(article.topic),
                  "summary": sentences(" ".join(article.body.split()))[0]}[kind]
        story, question = _cut(article.body.strip(), NEWS_CHARS), rng.choice(NEWS_QA[kind])
        content = f"{story}\n\n{question}" if rng.random() < 0.7 else f"{question}\n\n{story}"
        return {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]}


def _fits(messages: list, max_chars: int) -> bool:
    """User and assistant turns alternating, from the user's to the assistant's, none empty, within max_chars
    in all and at least 98% ASCII."""
    if len(messages) < 2 or len(messages) % 2 or not all(isinstance(m, dict) for m in messages):
        return False
    if [m.get("role") for m in messages] != ["user", "assistant"] * (len(messages) // 2):
        return False
    if not all(isinstance(m.get("content"), str) and m["content"].strip() for m in messages):
        return False
    text = "".join(m["content"] for m in messages)
    return len(text) <= max_chars and sum(c.isascii() for c in text) >= 0.98 * len(text)


class ShareGPT(_Task):
    """`size` ShareGPT conversations, a seeded sample of those that _fits. Its data states no license: opt-in
    only (--sharegpt N), never in a default mixture."""
    name = "ShareGPT"
    eval_split = None

    def __init__(self, size: int, seed: int = 42, path=None, max_chars: int = 2000, split: str = "train"):
        super().__init__(split)
        fitting = [c for c in _data().sharegpt_conversations(path) if _fits(c, max_chars)]
        if not fitting:
            raise ValueError(f"{self.name}: no conversation fits in {max_chars} characters")
        self.conversations = random.Random(f"sharegpt-{seed}").sample(fitting, min(size, len(fitting)))
        self.size = len(self.conversations)

    def get_example(self, index: int) -> dict:
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in self.conversations[index]]}


# --- mixtures --------------------------------------------------------------------------------------------

def available_tasks(builders, what: str = "knowledge tasks") -> list[Task]:
    """Build each task; those whose data is unavailable (UserError) are left out, with one printed line."""
    built, problems = [], []
    for build in builders:
        try:
            built.append(build())
        except UserError as e:
            problems.append(str(e.code).removeprefix("error: "))
    if problems:
        print(f"note: {what} left out of the mixture: {'; '.join(dict.fromkeys(problems))}")
    return built


def add_sharegpt(mixture: TaskMixture, n: int, seed: int) -> TaskMixture:
    """The mixture plus n ShareGPT conversations (the opt-in --sharegpt N); unchanged for n = 0."""
    if n <= 0:
        return mixture
    return TaskMixture(mixture.tasks + [ShareGPT(size=n, seed=seed)], seed=seed)

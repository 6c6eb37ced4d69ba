"""
Tests of the knowledge tasks (tasks/knowledge.py) on small hand-made articles, countries and news in place of
nanochat/knowledge_data.py's: training data never asks about a held-out item, the evaluations ask only about
held-out (or only about trained-on) items, determinism, the country-answer scorer, ARC's multiple-choice format,
chat_eval's registry and the mixtures' fallback when the data is unavailable.

    pytest tests/test_knowledge.py -q
"""

import re
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_gpt
from nanochat import chat_eval, report
from nanochat.chat_eval import run_categorical, run_generative
from nanochat.common import UserError
from tasks import knowledge
from tasks.common import TaskMixture, evaluate_letter, render_mc
from tasks.knowledge import (CountryFacts, CountryQuestions, NewsQuestions, ShareGPT, WikiChoice, WikiQuestions,
                             add_sharegpt, available_tasks, lead, score_country_answer, sentences)


@dataclass(frozen=True)
class Article:
    title: str
    extract: str
    description: str
    topic: str


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    capital: str
    region: str
    subregion: str
    languages: tuple
    currencies: tuple
    borders: tuple
    area: float | None = None


@dataclass(frozen=True)
class NewsArticle:
    topic: str
    title: str
    body: str


TOPICS = ["People", "Geography", "Science"]
# 36 articles, 12 per topic; every 4th one (9 in all) is held out. Titles and descriptions are unique words, so
# finding one inside a conversation's text means that item is in it.
ARTICLES = [Article(f"Topic{t} Item{i:02d}" + (" (band)" if i == 5 else ""),
                    f"Topic{t} Item{i:02d} {'was' if i % 2 else 'is'} the thing number {i} of topic {t}. It is "
                    f"known for being item {i}. A third sentence that is never part of an answer.",
                    f"descr{t}x{i:02d} of the topic", TOPICS[t])
            for t in range(3) for i in range(12)]
HELD_WIKI = {a.title for k, a in enumerate(ARTICLES) if k % 4 == 0} | {"Portugal"}
# About countries: Spain and Madrid are trained-on articles about a held-out country, so training leaves them out;
# Portugal is a held-out article, so training asks nothing about the country Portugal either.
ARTICLES += [Article("Spain", "Spain is a country whose capital is Madrid.", "Country in Southern Europe", "Geography"),
             Article("Madrid", "Madrid is the capital of Spain.", "Capital of Spain", "Geography"),
             Article("Portugal", "Portugal is a country in Europe.", "Country in Iberia", "Geography")]

COUNTRIES = [
    Country("FR", "France", "Paris", "Europe", "Western Europe", ("French",), ("Euro",),
            ("Spain", "Belgium", "Germany")),
    Country("ES", "Spain", "Madrid", "Europe", "Southern Europe", ("Spanish",), ("Euro",), ("France", "Portugal")),
    Country("DE", "Germany", "Berlin", "Europe", "Western Europe", ("German",), ("Euro",), ("France",)),
    Country("PT", "Portugal", "Lisbon", "Europe", "Southern Europe", ("Portuguese",), ("Euro",), ("Spain",)),
    Country("CO", "Colombia", "Bogotá", "the Americas", "South America", ("Spanish",), ("Colombian peso",),
            ("Peru", "Brazil")),
    Country("PE", "Peru", "Lima", "the Americas", "South America", ("Spanish", "Quechua", "Aymara"),
            ("Peruvian sol",), ("Colombia", "Brazil")),
    Country("BR", "Brazil", "Brasília", "the Americas", "South America", ("Portuguese",), ("Brazilian real",),
            ("Colombia", "Peru")),
    Country("US", "United States", "Washington D.C.", "the Americas", "North America", ("English",),
            ("United States dollar",), ()),
    Country("JP", "Japan", "Tokyo", "Asia", "Eastern Asia", ("Japanese",), ("Japanese yen",), ()),
    Country("KE", "Kenya", "Nairobi", "Africa", "Eastern Africa", ("English", "Swahili"), ("Kenyan shilling",), ()),
    Country("TO", "Tonga", "Nuku'alofa", "Oceania", "Polynesia", ("English", "Tongan"), ("Tongan paʻanga",), ()),
    Country("JM", "Jamaica", "Kingston", "the Americas", "the Caribbean", ("English",), ("Jamaican dollar",), ()),
]
HELD_COUNTRIES = {"ES", "CO", "KE", "TO"}

NEWS = [NewsArticle("tech", "Robots learn to cook", "Robots learned to cook pasta in a lab on Monday. " * 60),
        NewsArticle("sports", "Team wins cup", "The team won the cup. Fans cheered. The coach was happy."),
        NewsArticle("entertainment", "Film breaks record", "A film broke the record. It sold many tickets.")]

SHAREGPT = [
    [{"role": "user", "content": "Hi, how are you?"}, {"role": "assistant", "content": "Fine, thanks."}],
    [{"role": "user", "content": "Explain rain."}, {"role": "assistant", "content": "Water falls. " * 300}],  # long
    [{"role": "user", "content": "日本語で話して"}, {"role": "assistant", "content": "はい、話せます。"}],        # non-ASCII
    [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}],                          # order
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": ""}],                    # empty
    [{"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Four."},
     {"role": "user", "content": "And three plus three?"}, {"role": "assistant", "content": "Six."}],
]


def held_out(kind, key):
    return key in {"wiki": HELD_WIKI, "country": HELD_COUNTRIES}[kind]


@pytest.fixture(autouse=True)
def data(monkeypatch):
    """knowledge_data replaced by the records above."""
    fake = SimpleNamespace(wiki_articles=lambda: list(ARTICLES), countries=lambda: list(COUNTRIES),
                           news_articles=lambda: list(NEWS), is_held_out=held_out,
                           sharegpt_conversations=lambda path=None, max_records=None: list(SHAREGPT))
    monkeypatch.setattr(knowledge, "_data", lambda: fake)
    return fake


def training_tasks(seed=42):
    return [WikiQuestions(size=300, seed=seed), CountryQuestions(size=300, seed=seed),
            NewsQuestions(size=30, seed=seed), ShareGPT(size=10, seed=seed)]


def user_text(conversation):
    return "\n".join(m["content"] for m in conversation["messages"] if m["role"] == "user")


def all_text(conversation):
    return "\n".join(m["content"] for m in conversation["messages"])


# -----------------------------------------------------------------------------
# Training data

def test_training_conversations_are_well_formed():
    for task in training_tasks():
        assert task.split == "train" and task.eval_split is None and len(task) > 0
        for conversation in task:
            messages = conversation["messages"]
            assert len(messages) >= 2 and len(messages) % 2 == 0, task.name
            assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2), task.name
            assert all(isinstance(m["content"], str) and m["content"].strip() for m in messages), task.name
    TaskMixture(training_tasks())               # a mixture takes them: none is an evaluated split
    with pytest.raises(ValueError, match="'train' split only"):
        WikiQuestions(split="test")


def test_no_training_conversation_asks_about_a_held_out_item():
    """'Asks about' = a held-out title, country name or capital in a user turn, or a held-out article's text or
    description anywhere. A held-out country may still be named in an answer, as a trained-on one's neighbour.
    Nor does training ask about a held-out country through its article, or about a held-out article's country."""
    held_countries = [c for c in COUNTRIES if c.code in HELD_COUNTRIES]
    held_articles = [a for a in ARTICLES if a.title in HELD_WIKI]
    neighbour_mentions = 0
    for task in training_tasks():
        for conversation in task:
            asked, text = user_text(conversation), all_text(conversation)
            subject = conversation.get("subject")
            assert subject not in HELD_WIKI | HELD_COUNTRIES | {"Spain", "Madrid", "PT"}
            for a in held_articles:
                word = a.title.split(" (")[0]
                assert not re.search(rf"\b{word}\b", text) and a.description not in text.lower(), (a.title, text)
            for c in held_countries:
                assert not re.search(rf"\b{c.name}\b", asked) and c.capital not in asked, (c.name, asked)
                assert c.capital not in text, (c.name, text)        # no held-out fact in any answer either
                neighbour_mentions += c.name in text
    assert neighbour_mentions > 0       # control: Spain is France's neighbour, named in France's answers


def test_wiki_questions_answer_with_the_lead_and_include_choices():
    task = WikiQuestions(size=300, seed=1)
    examples = list(task)
    choices = [c for c in examples if "letters" in c]
    assert 0.1 < len(choices) / len(examples) < 0.35
    article = {a.title: a for a in ARTICLES}
    for conversation in examples:
        if "letters" in conversation:
            continue
        question, answer = (m["content"] for m in conversation["messages"])
        a = article[conversation["subject"]]
        assert answer == lead(a.extract) and "third sentence" not in answer
        verb = "was" if " was " in answer else "is"
        if question.startswith(("Who", "who")):
            assert a.topic == "People" and question.startswith(("Who " + verb, "who " + verb)), question
        assert "(band)" not in question        # the name without its disambiguation: no other article shares it


def test_country_questions_are_full_sentences_in_varied_wordings():
    task = CountryQuestions(size=400, seed=3)
    questions = {}
    for conversation in task:
        for q, a in zip(conversation["messages"][::2], conversation["messages"][1::2]):
            assert q["content"][-1] in "?." and a["content"].endswith(".") and a["content"][0].isupper()
            questions.setdefault(re.sub(r"France|Germany|Peru|Portugal|Brazil|Japan|the United States|Jamaica|"
                                        r"Paris|Berlin|Lima|Lisbon|Brasília|Tokyo|Washington D.C.|Kingston",
                                        "X", q["content"]), set()).add(a["content"])
    for fact in ("capital", "reverse", "continent", "language", "currency", "neighbours"):
        wordings = {q.replace("{n}", "X").replace("{c}", "X") for q in knowledge.COUNTRY_QA[fact][0]}
        assert len(wordings) >= 4 and len(wordings & set(questions)) >= 4, fact
    peru = next(c for c in COUNTRIES if c.code == "PE")
    assert knowledge.country_qa(peru, "capital") == ("What is the capital of Peru?", "The capital of Peru is Lima.")
    assert knowledge.country_qa(peru, "reverse") == ("Lima is the capital of which country?",
                                                     "Lima is the capital of Peru.")
    assert knowledge.country_qa(peru, "language")[1] == \
        "The official languages of Peru are Spanish, Quechua and Aymara."
    us = next(c for c in COUNTRIES if c.code == "US")
    assert knowledge.country_qa(us, "continent") == ("Which continent is the United States in?",
                                                     "The United States is in North America.")
    jamaica = next(c for c in COUNTRIES if c.code == "JM")
    assert knowledge.country_qa(jamaica, "continent")[1] == "Jamaica is in the Caribbean, in North America."
    assert knowledge.country_qa(us, "neighbours")[1] == "The United States has no land borders with other countries."


def test_news_questions_paste_a_cut_story():
    for conversation in NewsQuestions(size=40, seed=0):
        question, answer = conversation["messages"]
        assert len(question["content"]) < knowledge.NEWS_CHARS + 100
        assert answer["content"] in {n.title for n in NEWS} | {"This is a technology story.", "This is a sports story.",
                                                              "This is an entertainment story."} \
            or answer["content"] in {sentences(n.body)[0] for n in NEWS}


def test_sharegpt_keeps_what_fits_and_is_opt_in():
    task = ShareGPT(size=10)
    assert len(task) == 2 and {len(c["messages"]) for c in task} == {2, 4}
    base = TaskMixture([NewsQuestions(size=5)])
    assert add_sharegpt(base, 0, 42) is base                    # not asked for: unchanged
    assert len(add_sharegpt(base, 1, 42)) == 6
    from scripts import chat_sft, mid_train
    assert mid_train.parse_args([]).sharegpt == 0 and chat_sft.parse_args(["--sharegpt", "7"]).sharegpt == 7


def test_mixtures_go_on_without_the_data(data, capsys):
    def missing():
        raise UserError("the knowledge data package is not available: pip install it")
    data.wiki_articles = data.countries = data.news_articles = missing
    tasks = available_tasks([lambda: WikiQuestions(size=5), lambda: CountryQuestions(size=5),
                             lambda: NewsQuestions(size=5)])
    out = capsys.readouterr().out.strip().splitlines()
    assert tasks == [] and out == ["note: knowledge tasks left out of the mixture: the knowledge data package is "
                                   "not available: pip install it"]


def test_determinism():
    for make in (lambda seed: WikiQuestions(size=50, seed=seed), lambda seed: CountryQuestions(size=50, seed=seed),
                 lambda seed: NewsQuestions(size=20, seed=seed), lambda seed: ShareGPT(size=2, seed=seed)):
        assert list(make(5)) == list(make(5))
        if not isinstance(make(5), ShareGPT):
            assert list(make(5)) != list(make(6))
    for make in (lambda: WikiChoice("test"), lambda: WikiChoice("test", trained=True),
                 lambda: CountryFacts("test"), lambda: CountryFacts("test", trained=True)):
        assert list(make()) == list(make())


# -----------------------------------------------------------------------------
# Evaluation

def test_country_evaluations_ask_about_one_side_of_the_split():
    held, trained = CountryFacts("test"), CountryFacts("test", trained=True)
    assert held.name == "Countries" and trained.name == "Countries-trained"
    held_codes = {c["subject"] for c in held}
    trained_codes = {c["subject"] for c in trained}
    assert held_codes == HELD_COUNTRIES and not trained_codes & (HELD_COUNTRIES | {"PT"})
    assert len(trained_codes) == len(held_codes) and len(held) == len(trained) == 3 * len(held_codes)
    first = held[0]                             # sorted by name, then capital, continent, language
    assert first["messages"][0]["content"] == "What is the capital of Colombia?" and first["fact"] == "capital"
    assert [c["fact"] for c in held][:3] == ["capital", "continent", "language"]
    assert held.evaluate(first, "It is Bogota.") and not held.evaluate(first, "Medellín.")
    with pytest.raises(ValueError, match="'test' split only"):
        CountryFacts("train")


def test_score_country_answer():
    france, colombia, peru, us, tonga, japan = (next(c for c in COUNTRIES if c.code == k)
                                                for k in ("FR", "CO", "PE", "US", "TO", "JP"))
    right = [(france, "capital", "The capital of France is Paris."), (france, "capital", "paris"),
             (france, "capital", "PARIS!"), (colombia, "capital", "Bogota"), (colombia, "capital", "Bogotá."),
             (colombia, "capital", "bogotá"), (us, "capital", "Washington, D.C."), (us, "capital", "Washington DC"),
             (us, "capital", "It is Washington."),
             (tonga, "capital", "Nukualofa"), (france, "continent", "France is in Western Europe."),
             (peru, "continent", "South America"), (peru, "continent", "It is in the Americas."),
             (japan, "continent", "asia"), (peru, "language", "They speak Quechua."),
             (france, "language", "The official language of France is French.")]
    wrong = [(france, "capital", "Lyon"), (france, "capital", "Parisian"), (france, "capital", ""),
             (colombia, "capital", "Bogotano"), (us, "capital", "New York"), (france, "continent", "Europa"),
             (japan, "continent", "Eurasia"), (peru, "continent", "Africa"), (peru, "language", "English"),
             (france, "language", "Frenchman")]
    assert all(score_country_answer(reply, c, fact) for c, fact, reply in right), \
        [(c.name, r) for c, f, r in right if not score_country_answer(r, c, f)]
    assert not any(score_country_answer(reply, c, fact) for c, fact, reply in wrong), \
        [(c.name, r) for c, f, r in wrong if score_country_answer(r, c, f)]
    with pytest.raises(ValueError, match="unknown country fact"):
        score_country_answer("x", france, "currency")


def described(choice):
    return next(a for a in ARTICLES if a.description.lower() == choice.lower())


def test_wiki_evaluations_ask_about_one_side_of_the_split():
    for trained in (False, True):
        task = WikiChoice("test", trained=trained)
        assert task.name == ("Wiki-trained" if trained else "Wiki") and task.eval_type == "categorical"
        assert len(task) == (27 if trained else 10)         # trained-on: not Spain and Madrid (see ARTICLES)
        for conversation in task:
            assert (conversation["subject"] in HELD_WIKI) != trained
            choices = re.findall(r"^[A-D]\. (.*)$", conversation["messages"][0]["content"], re.M)
            shown = [described(c) for c in choices]         # the other choices: from the same side too
            assert all((a.title in HELD_WIKI) != trained for a in shown)
    assert len(WikiChoice("test", size=4)) == 4


def test_wiki_choice_has_arcs_format():
    task = WikiChoice("test")
    article = {a.title: a for a in ARTICLES}
    for conversation in task:
        assert set(conversation) == {"messages", "letters", "answer", "subject"}
        assert conversation["letters"] == ["A", "B", "C", "D"] and conversation["answer"] in "ABCD"
        user, assistant = conversation["messages"]
        a = article[conversation["subject"]]
        choices = re.findall(r"^[A-D]\. (.*)$", user["content"], re.M)
        assert user["content"] == render_mc(f"Which of these describes {a.title.split(' (')[0]}?", choices)
        assert assistant["content"] == conversation["answer"]
        assert choices["ABCD".index(conversation["answer"])].lower() == a.description.lower()
        assert len({c.lower() for c in choices}) == 4
        assert sum(described(c).topic == a.topic for c in choices) >= 3     # 3 or 4 held out per topic
        assert task.evaluate(conversation, conversation["answer"]) and evaluate_letter(conversation, " " +
                                                                                       conversation["answer"])
    training_choice = next(c for c in WikiQuestions(size=50) if "letters" in c)
    assert training_choice["messages"][0]["content"].startswith("Which of these describes ")
    assert set(training_choice) == set(task[0])


def test_wiki_choice_distractors_prefer_the_topic():
    task = WikiChoice("test", trained=True)           # 9 trained-on articles per topic: room for 3
    article = {a.title: a for a in ARTICLES}
    for conversation in task:
        choices = re.findall(r"^[A-D]\. (.*)$", conversation["messages"][0]["content"], re.M)
        assert {described(c).topic for c in choices} == {article[conversation["subject"]].topic}


def test_lead_and_sentences():
    assert sentences("J. S. Bach (c. 1685) was a composer. He lived in St. Louis? No. It is 3 km.") == \
        ["J. S. Bach (c. 1685) was a composer.", "He lived in St. Louis?", "No. It is 3 km."]
    text = "Paris (French pronunciation: [paʁi] (listen)) is the capital of France. " + "It is big. " * 3
    assert lead(text) == "Paris is the capital of France. It is big."
    assert lead("A" * 390 + ". Second sentence here.") == "A" * 390 + "."
    assert lead("A" * 500 + ". Second.") is None
    spoken = knowledge._spoken
    assert spoken("House of Medici", "The House of Medici was a family.") == "the House of Medici"
    assert spoken("Nebula", "A nebula is a cloud. Nebulae are big.") == "nebula"
    assert spoken("Peat", "Peat is decayed vegetation. It is also called peat moss.") == "peat"
    assert spoken("Manchuria", "Manchuria is a region. Manchuria lies in Asia.") == "Manchuria"
    assert spoken("Optics", "In physics, optics is a branch.") == "Optics"


# -----------------------------------------------------------------------------
# chat_eval and the report

def test_chat_eval_knows_the_knowledge_tasks():
    names = ["Countries", "Countries-trained", "Wiki", "Wiki-trained"]
    assert chat_eval.resolve_task_names("countries,WIKI-trained") == ["Countries", "Wiki-trained"]
    assert set(names) <= set(chat_eval.resolve_task_names("all"))
    assert not set(names) & set(chat_eval.CHATCORE_TASKS) and len(chat_eval.CHATCORE_TASKS) == 6
    assert all(name in report.COLUMNS for name in names)
    for name in names:
        task = chat_eval.TASKS[name]()
        assert task.name == name and task.split == task.eval_split == "test"


class FakeEngine:
    """A reply per question: the capital, continent or language asked for, wrong for every other question."""

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies = tokenizer, replies

    def fit_prompt(self, messages, max_tokens):
        return self.tokenizer.render_for_completion({"messages": messages}), max_tokens, 0

    def generate_batch(self, prompt, num_samples=1, **kwargs):
        question = self.tokenizer.decode(prompt[2:-2])
        return [prompt + self.tokenizer.encode(self.replies.get(question, "I do not know."))], None


def test_chat_eval_scores_them_with_standard_errors(byte_tok):
    torch.set_num_threads(1)
    countries = chat_eval.TASKS["Countries"]()
    engine = FakeEngine(byte_tok, {"What is the capital of Colombia?": "The capital is Bogota.",
                                   "Which continent is Kenya in?": "Kenya is in Africa.",
                                   "What is the capital of Spain?": "Barcelona."})
    result = run_generative(engine, countries, max_new_tokens=8, progress=False)
    assert result.n == 12 and result.accuracy == pytest.approx(2 / 12) and result.baseline == 0
    assert result.stderr == pytest.approx((2 / 12 * 10 / 12 / 12) ** 0.5)
    assert result.line().startswith("Countries         accuracy 0.1667 ± 0.1076   centred +0.1667")
    model = tiny_gpt(byte_tok.get_vocab_size(), depth=1, seq_len=256, perturb=0.5).eval()
    wiki = run_categorical(model, byte_tok, chat_eval.TASKS["Wiki"](), progress=False)
    assert wiki.n == 10 and wiki.baseline == pytest.approx(0.25) and set(wiki.answers) <= set("ABCD")
    assert wiki.centred == pytest.approx((wiki.accuracy - 0.25) / 0.75)
    assert wiki.centred_stderr == pytest.approx(wiki.stderr / 0.75) and "baseline 0.250" in wiki.line()

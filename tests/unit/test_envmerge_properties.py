"""Property tests of the three-way merge (hypothesis)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from core.env.envmerge import merge, parse, render

KEYS = st.sampled_from([f"K{i}" for i in range(12)])
VALUES = st.one_of(
    st.text(alphabet="abcxyz019_-./:", max_size=8),
    st.text(alphabet="ab c=#'", min_size=1, max_size=6).map(lambda v: '"' + v.replace('"', "") + '"'),
    st.just('"line one\nline two"'),
)
COMMENTS = st.sampled_from(["# a comment", "", "# ---- section ----"])


@st.composite
def env_text(draw, keys=None):
    keys = keys if keys is not None else draw(st.lists(KEYS, unique=True, max_size=8))
    lines = []
    for k in keys:
        if draw(st.booleans()):
            lines.append(draw(COMMENTS))
        style = draw(st.sampled_from(["{k}={v}", "export {k}={v}", "{k} = {v}"]))
        lines.append(style.format(k=k, v=draw(VALUES)))
    return "\n".join(lines) + ("\n" if lines else "")


@st.composite
def three_files(draw):
    old = draw(env_text())
    new = draw(env_text())
    old_doc = parse(old)
    user_keys = [k for k in old_doc.values if draw(st.booleans())] + draw(st.lists(KEYS, unique=True, max_size=3))
    user_keys = list(dict.fromkeys(user_keys))
    lines = []
    for k in user_keys:
        if k in old_doc.values and draw(st.booleans()):
            lines.append(old_doc.lines[[ln.key for ln in old_doc.lines].index(k)].text.rstrip("\n"))
        else:
            lines.append(f"{k}={draw(VALUES)}")
    return "\n".join(lines) + ("\n" if lines else ""), old, new


@settings(max_examples=300, deadline=None)
@given(three_files())
def test_merge_of_an_untouched_template_gives_the_new_templates_values(files):
    _, old, new = files
    assert parse(merge(parse(old), parse(old), parse(new)).text).values == parse(new).values


@settings(max_examples=300, deadline=None)
@given(env_text())
def test_parse_then_render_is_byte_identical(text):
    assert render(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(three_files())
def test_merge_is_idempotent(files):
    user, old, new = files
    once = merge(parse(user), parse(old), parse(new)).text
    assert merge(parse(once), parse(old), parse(new)).text == once


@settings(max_examples=300, deadline=None)
@given(three_files())
def test_no_value_is_ever_lost(files):
    user, old, new = files
    u, o = parse(user).values, parse(old).values
    result = merge(parse(user), parse(old), parse(new))
    merged = parse(result.text).values
    for key, value in u.items():
        if key in merged:
            assert merged[key] == value or (key in o and value == o[key]), key
        else:
            assert key in result.by_category["dropped"] and o.get(key) == value, key


RAW_LINES = st.lists(st.one_of(
    st.sampled_from(["", "   ", "# c", "  # indented", "A=1", "export B=2", "C = 3", "D=x # note", "E=a#b",
                     "F='q v'", 'G="m\nn"', "H=", "I=  lead", "J", "bad line", "K=v\t", "L.M=1", "N=it's"]),
    st.text(alphabet="AB=#'\" x\\e\t", max_size=10),
), max_size=12)


@settings(max_examples=500, deadline=None)
@given(RAW_LINES, st.booleans())
def test_fast_path_yields_exactly_python_dotenv_bindings(lines, trailing_newline):
    import io

    from dotenv.parser import parse_stream

    from core.env.envdoc import _bindings
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    assert list(_bindings(text)) == list(parse_stream(io.StringIO(text)))

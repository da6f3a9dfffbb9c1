package web

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// catalogue parses i18n.js: the one place of user-facing strings.
func catalogue(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := consoleFS.ReadFile("console/i18n.js")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start, end := strings.Index(s, "window.XL_I18N = "), strings.LastIndex(s, "};")
	if start < 0 || end < 0 {
		t.Fatal("i18n.js: window.XL_I18N = {...}; not found")
	}
	var cat map[string]map[string]string
	if err := json.Unmarshal([]byte(s[start+len("window.XL_I18N = "):end+1]), &cat); err != nil {
		t.Fatalf("i18n.js is not a JSON object: %v", err)
	}
	return cat
}

// Every user-facing string comes from the catalogue: no Chinese or English
// UI text in the page or the script, both languages have the same keys,
// and every key the script and page use exists.
func TestNoUIStringsOutsideTheCatalogue(t *testing.T) {
	cat := catalogue(t)
	zh, en := cat["zh-CN"], cat["en"]
	if len(zh) == 0 || len(zh) != len(en) {
		t.Fatalf("catalogue: %d zh-CN keys, %d en keys", len(zh), len(en))
	}
	for k := range zh {
		if en[k] == "" {
			t.Errorf("key %q has no English", k)
		}
	}
	englishPhrase := regexp.MustCompile(`["'` + "`" + `]([A-Z][a-z]+(?: [A-Za-z]+)+)["'` + "`" + `]`)
	textNode := regexp.MustCompile(`>([^<]*\p{L}[^<]*)<`)
	for _, name := range []string{"console/console.js", "console/index.html"} {
		b, err := consoleFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		code := stripComments(src)
		for i, r := range code {
			if unicode.Is(unicode.Han, r) {
				t.Errorf("%s: Chinese text outside the catalogue near %q", name, snippet(code, i))
				break
			}
		}
		if m := englishPhrase.FindString(code); m != "" {
			t.Errorf("%s: English UI text outside the catalogue: %s", name, m)
		}
		if strings.HasSuffix(name, ".html") {
			for _, m := range textNode.FindAllStringSubmatch(src, -1) {
				t.Errorf("%s: text %q in the page; use data-i18n", name, m[1])
			}
		}
		for _, m := range regexp.MustCompile(`(?:\bt\("|data-i18n=")([a-z_.0-9]+[a-z0-9])"`).FindAllStringSubmatch(src, -1) {
			if zh[m[1]] == "" {
				t.Errorf("%s uses key %q, which the catalogue lacks", name, m[1])
			}
		}
	}
}

func stripComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "//") || strings.HasPrefix(l, "<!--") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func snippet(s string, i int) string {
	lo, hi := max(0, i-20), min(len(s), i+20)
	return s[lo:hi]
}

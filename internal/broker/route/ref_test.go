package route

import (
	"regexp"
	"strings"
)

// refMatch is the reference topic matcher the trie is checked against. It is
// written independently of the trie: the key becomes a string in which every
// word is preceded by a '.' (so the empty key, which is zero words, stays
// empty and "a." becomes ".a."), and the pattern becomes an anchored regular
// expression over that string.
func refMatch(pattern, key string) bool {
	return refRegexp(pattern).MatchString(refKey(key))
}

func refKey(key string) string {
	if key == "" {
		return ""
	}
	return "." + key
}

func refRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	if pattern != "" {
		for _, w := range strings.Split(pattern, ".") {
			switch w {
			case "*":
				b.WriteString(`\.[^.]*`)
			case "#":
				b.WriteString(`(?:\.[^.]*)*`)
			default:
				b.WriteString(`\.` + regexp.QuoteMeta(w))
			}
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

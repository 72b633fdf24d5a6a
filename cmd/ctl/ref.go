package main

import (
	"errors"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Image references, normalised as docker, containerd and pull name images
// ("busybox" is docker.io/library/busybox:latest), without linking
// github.com/distribution/reference: its regular expressions are compiled
// when a program starts, and berthctl starts for every command. The
// grammar is distribution/reference's (TestNormalizeRef compares the two,
// and FuzzNormalizeRef looks for a disagreement); the daemon checks the
// references it pulls with distribution/reference itself.

const (
	refDefaultDomain = "docker.io"
	refLegacyDomain  = "index.docker.io"
	refOfficialRepo  = "library/"
	refPathMax       = 255 // bytes of a repository path, without its domain
	refTagMax        = 128
)

var errBadRef = errors.New("invalid reference format")

// normalizeRef returns the normalised form of the image reference s:
// domain/path[:tag][@digest], with docker.io for a name without a domain
// (a first component with '.' or ':', or "localhost", or an uppercase
// letter is a domain), library/ for a docker.io name of one component,
// and ":latest" for a reference without a tag or digest.
func normalizeRef(s string) (string, error) {
	if isHex64(s) {
		return "", errors.New("invalid repository name: cannot specify 64-byte hexadecimal strings")
	}
	domain, rest := splitDomain(s)
	remote := rest
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		remote = rest[:i]
	}
	if strings.ToLower(remote) != remote {
		return "", errors.New("invalid reference format: repository name must be lowercase")
	}
	full := domain + "/" + rest
	name, dgst, hasDigest := strings.Cut(full, "@")
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
		if !validTag(tag) {
			return "", errBadRef
		}
	}
	domain, path, ok := splitName(name)
	if !ok {
		return "", errBadRef
	}
	if len(path) > refPathMax {
		return "", errors.New("repository name must not be more than 255 characters")
	}
	name = domain + "/" + path
	out := name
	if tag != "" {
		out += ":" + tag
	}
	if hasDigest {
		d, err := digest.Parse(dgst)
		if err != nil {
			return "", err
		}
		out += "@" + d.String()
	} else if tag == "" {
		out += ":latest"
	}
	return out, nil
}

// splitDomain is distribution/reference's splitDockerDomain.
func splitDomain(s string) (domain, rest string) {
	first, after, ok := strings.Cut(s, "/")
	if !ok || !strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first {
		domain, rest = refDefaultDomain, s
	} else {
		domain, rest = first, after
	}
	if domain == refLegacyDomain {
		domain = refDefaultDomain
	}
	if domain == refDefaultDomain && !strings.Contains(rest, "/") {
		rest = refOfficialRepo + rest
	}
	return domain, rest
}

// splitName splits name into [domain/]path-component[/…]. The grammar
// takes the first component as the domain when it can; otherwise the
// whole name is a path, under an empty domain (distribution/reference
// then names it "/path": such a name finds no image).
func splitName(name string) (domain, path string, ok bool) {
	if first, rest, ok := strings.Cut(name, "/"); ok && validDomain(first) && validPath(rest) {
		return first, rest, true
	}
	return "", name, validPath(name)
}

func validPath(p string) bool {
	for c := range strings.SplitSeq(p, "/") {
		if !validPathComponent(c) {
			return false
		}
	}
	return true
}

// validPathComponent: [a-z0-9]+ joined by '.', '_', "__" or a run of '-'.
func validPathComponent(c string) bool {
	if c == "" || !isLowerAlnum(c[0]) || !isLowerAlnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if isLowerAlnum(c[i]) {
			i++
			continue
		}
		j := i
		for j < len(c) && !isLowerAlnum(c[j]) {
			j++
		}
		switch sep := c[i:j]; {
		case sep == "." || sep == "_" || sep == "__":
		case strings.Trim(sep, "-") == "":
		default:
			return false
		}
		i = j
	}
	return true
}

// validDomain: a host name ('.'-joined [a-zA-Z0-9] or [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])
// or a bracketed IPv6 address, with an optional :port.
func validDomain(d string) bool {
	host, port := d, ""
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 0 || end == 1 || strings.Trim(d[1:end], "0123456789abcdefABCDEF:") != "" {
			return false
		}
		host, port = "", d[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
	} else if i := strings.IndexByte(d, ':'); i >= 0 {
		host, port = d[:i], d[i:]
	}
	if port != "" && (len(port) == 1 || strings.Trim(port[1:], "0123456789") != "") {
		return false
	}
	if host == "" {
		return strings.HasPrefix(d, "[")
	}
	for c := range strings.SplitSeq(host, ".") {
		if c == "" || c[0] == '-' || c[len(c)-1] == '-' || strings.Trim(c, "-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return false
		}
	}
	return true
}

// validTag: [\w][\w.-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > refTagMax || !isWord(t[0]) {
		return false
	}
	for i := 1; i < len(t); i++ {
		if !isWord(t[i]) && t[i] != '.' && t[i] != '-' {
			return false
		}
	}
	return true
}

func isLowerAlnum(b byte) bool { return 'a' <= b && b <= 'z' || '0' <= b && b <= '9' }

func isWord(b byte) bool { return isLowerAlnum(b) || 'A' <= b && b <= 'Z' || b == '_' }

func isHex64(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

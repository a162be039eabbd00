package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// This file reads Context Services' business-attribute metadata document
// (the answer of GET /genesys/1/cs/metadata/business-attributes, fetched by
// business_attributes_from or saved as a business_attributes file) into the
// Attributes that NewTables takes.

// wireAttribute and wireValue mirror the metadata JSON; unknown keys are
// ignored by encoding/json.
type wireAttribute struct {
	Name        *string     `json:"name"`
	DisplayName string      `json:"display_name"`
	Description string      `json:"description"`
	Values      []wireValue `json:"values"`
}

type wireValue struct {
	Name        string          `json:"name"`
	DisplayName string          `json:"display_name"`
	Description string          `json:"description"`
	DBID        json.RawMessage `json:"dbid"`
	Default     bool            `json:"default"`
	IsDefault   bool            `json:"is_default"`
}

// ParseAttributes parses the metadata JSON of Context Services' business
// attributes: one attribute object or a list of them. dbid may be a number
// or a numeric string.
func ParseAttributes(data []byte) ([]Attribute, error) {
	data = bytes.TrimSpace(data)
	var wire []wireAttribute
	switch {
	case len(data) == 0:
		return nil, errors.New("empty business attributes document")
	case data[0] == '{':
		var one wireAttribute
		if err := json.Unmarshal(data, &one); err != nil {
			return nil, fmt.Errorf("not a business attribute JSON object: %w", err)
		}
		wire = []wireAttribute{one}
	case data[0] == '[':
		if err := json.Unmarshal(data, &wire); err != nil {
			return nil, fmt.Errorf("not a JSON list of business attributes: %w", err)
		}
	default:
		return nil, errors.New("not JSON: a business attributes document is an object or a list of objects")
	}
	out := make([]Attribute, 0, len(wire))
	for i, w := range wire {
		if w.Name == nil || *w.Name == "" {
			return nil, fmt.Errorf("attribute #%d has no name", i+1)
		}
		a := Attribute{Name: *w.Name, DisplayName: w.DisplayName, Description: w.Description,
			Values: make([]AttributeValue, 0, len(w.Values))}
		for _, wv := range w.Values {
			id, err := parseDBID(wv.DBID)
			if err != nil {
				return nil, fmt.Errorf("attribute %s, value %q: %w", a.Name, wv.Name, err)
			}
			a.Values = append(a.Values, AttributeValue{Name: wv.Name, DisplayName: wv.DisplayName,
				Description: wv.Description, DBID: id, Default: wv.Default || wv.IsDefault})
		}
		if err := checkValues(a.Values); err != nil {
			return nil, fmt.Errorf("attribute %s: %w", a.Name, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseDBID accepts a JSON integer or a string holding a decimal integer
// that fits a signed 64-bit dbid.
func parseDBID(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New("dbid is missing")
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, fmt.Errorf("dbid %s is not a string: %w", raw, err)
		}
		text = strings.TrimSpace(text)
	}
	id, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("dbid %s does not fit a signed 64-bit integer", raw)
		}
		return 0, fmt.Errorf("dbid %s is not a decimal integer", raw)
	}
	return id, nil
}

// LoadAttributesFile reads and parses a metadata file; errors name the file.
func LoadAttributesFile(path string) ([]Attribute, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("business attributes file: %w", err)
	}
	attrs, err := ParseAttributes(data)
	if err != nil {
		return nil, fmt.Errorf("business attributes file %s: %w", path, err)
	}
	for i := range attrs {
		attrs[i].Source = path
	}
	return attrs, nil
}

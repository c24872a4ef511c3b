// Command gotemplate renders and inspects Ollama Go TEMPLATEs with Go's own text/template, for
// dslocal's Ollama test double. It is the double's code, written from the facts of Ollama
// v0.32.15's template/template.go, server/images.go and thinking/template.go: the values a
// messages template sees (System, Messages, Tools, Think, ThinkLevel, IsThinkSet, Response), the
// "missingkey=zero" option and the json/currentDate functions; Vars (the identifiers a template
// uses, lower-cased); InferTags (the text around .Thinking inside range .Messages); and the tool
// round-trip test.
//
// stdin: {"op": "render"|"inspect", "template": "...", "values": {...}}; stdout: JSON.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

type args map[string]any

func (a args) String() string {
	if a == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(a))
	return string(b)
}

type toolCallFunction struct {
	Index     int
	Name      string
	Arguments args
}

type toolCall struct {
	ID       string
	Function toolCallFunction
}

type message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking"`
	ToolCalls  []toolCall `json:"tool_calls"`
	ToolName   string     `json:"tool_name"`
	ToolCallID string     `json:"tool_call_id"`
}

type properties map[string]any

func (p properties) String() string {
	if p == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(p))
	return string(b)
}

type parameters struct {
	Type       string     `json:"type"`
	Defs       any        `json:"$defs,omitempty"`
	Items      any        `json:"items,omitempty"`
	Required   []string   `json:"required,omitempty"`
	Properties properties `json:"properties"`
}

type function struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Parameters  parameters `json:"parameters"`
}

type tool struct {
	Type     string   `json:"type"`
	Items    any      `json:"items,omitempty"`
	Function function `json:"function"`
}

func (t tool) String() string {
	b, _ := json.Marshal(t)
	return string(b)
}

type tools []tool

func (t tools) String() string {
	b, _ := json.Marshal([]tool(t))
	return string(b)
}

type request struct {
	Op       string `json:"op"`
	Template string `json:"template"`
	Values   struct {
		Messages []struct {
			Role      string `json:"role"`
			Content   string `json:"content"`
			Thinking  string `json:"thinking"`
			ToolName  string `json:"tool_name"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Function struct {
					Index     int            `json:"index"`
					Name      string         `json:"name"`
					Arguments map[string]any `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools      []tool           `json:"tools"`
		Think      bool             `json:"think"`
		ThinkLevel string           `json:"think_level"`
		IsThinkSet bool             `json:"is_think_set"`
	} `json:"values"`
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate": func(...string) string { return time.Now().Format("2006-01-02") },
	"yesterdayDate": func(...string) string {
		return time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	},
}

func identifiers(n parse.Node) []string {
	switch n := n.(type) {
	case *parse.ListNode:
		var out []string
		for _, c := range n.Nodes {
			out = append(out, identifiers(c)...)
		}
		return out
	case *parse.TemplateNode:
		if n.Pipe != nil {
			return identifiers(n.Pipe)
		}
	case *parse.ActionNode:
		return identifiers(n.Pipe)
	case *parse.IfNode:
		return identifiers(&n.BranchNode)
	case *parse.RangeNode:
		return identifiers(&n.BranchNode)
	case *parse.WithNode:
		return identifiers(&n.BranchNode)
	case *parse.BranchNode:
		out := identifiers(n.Pipe)
		if n.List != nil {
			out = append(out, identifiers(n.List)...)
		}
		if n.ElseList != nil {
			out = append(out, identifiers(n.ElseList)...)
		}
		return out
	case *parse.PipeNode:
		var out []string
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				out = append(out, identifiers(a)...)
			}
		}
		return out
	case *parse.FieldNode:
		return n.Ident
	case *parse.VariableNode:
		return n.Ident
	}
	return nil
}

func vars(t *template.Template) []string {
	set := map[string]bool{}
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		for _, name := range identifiers(tt.Root) {
			set[strings.ToLower(name)] = true
		}
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// children lists a node's child nodes in the order thinking.InferTags visits them.
func children(n parse.Node) []parse.Node {
	switch x := n.(type) {
	case *parse.ListNode:
		return x.Nodes
	case *parse.BranchNode:
		out := []parse.Node{}
		if x.Pipe != nil {
			out = append(out, x.Pipe)
		}
		if x.List != nil {
			out = append(out, x.List)
		}
		if x.ElseList != nil {
			out = append(out, x.ElseList)
		}
		return out
	case *parse.ActionNode:
		return []parse.Node{x.Pipe}
	case *parse.IfNode:
		return []parse.Node{&x.BranchNode}
	case *parse.RangeNode:
		return []parse.Node{&x.BranchNode}
	case *parse.WithNode:
		return []parse.Node{&x.BranchNode}
	case *parse.TemplateNode:
		if x.Pipe != nil {
			return []parse.Node{x.Pipe}
		}
	case *parse.PipeNode:
		out := []parse.Node{}
		for _, c := range x.Cmds {
			out = append(out, c)
		}
		return out
	case *parse.CommandNode:
		return x.Args
	}
	return nil
}

func usesField(n parse.Node, field string) bool {
	if f, ok := n.(*parse.FieldNode); ok && len(f.Ident) > 0 && f.Ident[0] == field {
		return true
	}
	if v, ok := n.(*parse.VariableNode); ok && len(v.Ident) > 1 && v.Ident[1] == field {
		return false // InferTags looks at fields only
	}
	for _, c := range children(n) {
		if usesField(c, field) {
			return true
		}
	}
	return false
}

// inferTags: where .Thinking appears inside a range over .Messages, the trimmed text nodes that open
// and close the innermost list holding it.
func inferTags(t *template.Template) (string, string) {
	opening, closing := "", ""
	var walk func(n parse.Node, ancestors []parse.Node)
	walk = func(n parse.Node, ancestors []parse.Node) {
		if n == nil {
			return
		}
		ancestors = append(ancestors, n)
		if f, ok := n.(*parse.FieldNode); ok && len(f.Ident) > 0 && f.Ident[0] == "Thinking" {
			var rng *parse.RangeNode
			for i := len(ancestors) - 1; i >= 0; i-- {
				if r, ok := ancestors[i].(*parse.RangeNode); ok {
					rng = r
					break
				}
			}
			if rng != nil && rng.Pipe != nil && usesField(rng.Pipe, "Messages") {
				for i := len(ancestors) - 1; i >= 0; i-- {
					if l, ok := ancestors[i].(*parse.ListNode); ok {
						if txt, ok := l.Nodes[0].(*parse.TextNode); ok {
							opening = strings.TrimSpace(txt.String())
						}
						if txt, ok := l.Nodes[len(l.Nodes)-1].(*parse.TextNode); ok {
							closing = strings.TrimSpace(txt.String())
						}
						break
					}
				}
			}
		}
		for _, c := range children(n) {
			walk(c, ancestors)
		}
	}
	walk(t.Root, nil)
	return opening, closing
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(err)
	}
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(req.Template)
	if err != nil {
		fail(err)
	}
	out := map[string]any{}
	switch req.Op {
	case "inspect":
		v := vars(t)
		open, close := inferTags(t)
		raw := req.Template
		roundTrip := contains(v, "tools") && contains(v, "toolcalls") &&
			(strings.Contains(raw, `eq .Role "tool"`) || strings.Contains(raw, "tool_response") ||
				strings.Contains(raw, "TOOL_RESULTS"))
		out = map[string]any{"vars": v, "thinking_open": open, "thinking_close": close, "tool_round_trip": roundTrip}
	case "render":
		v := req.Values
		var system []string
		var msgs []*message
		for _, m := range v.Messages {
			if m.Role == "system" {
				system = append(system, m.Content)
			}
			if len(msgs) > 0 && msgs[len(msgs)-1].Role == m.Role && m.Role != "tool" {
				msgs[len(msgs)-1].Content += "\n\n" + m.Content
				continue
			}
			msg := &message{Role: m.Role, Content: m.Content, Thinking: m.Thinking, ToolName: m.ToolName}
			for _, tc := range m.ToolCalls {
				msg.ToolCalls = append(msg.ToolCalls, toolCall{ID: tc.ID, Function: toolCallFunction{
					Index: tc.Function.Index, Name: tc.Function.Name, Arguments: args(tc.Function.Arguments)}})
			}
			msgs = append(msgs, msg)
		}
		var ts tools
		if v.Tools != nil {
			ts = tools(v.Tools)
		}
		if len(ts) == 0 {
			ts = nil
		}
		var b strings.Builder
		err := t.Execute(&b, map[string]any{
			"System": strings.Join(system, "\n\n"), "Messages": msgs, "Tools": ts, "Response": "",
			"Think": v.Think, "ThinkLevel": v.ThinkLevel, "IsThinkSet": v.IsThinkSet,
		})
		if err != nil {
			fail(err)
		}
		out = map[string]any{"prompt": b.String()}
	default:
		fail(fmt.Errorf("unknown op %q", req.Op))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func fail(err error) {
	json.NewEncoder(os.Stdout).Encode(map[string]string{"error": err.Error()})
	os.Exit(1)
}

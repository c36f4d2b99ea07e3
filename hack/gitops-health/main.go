// Command gitops-health reads Kubernetes objects as JSON on stdin (one object, or a List) and
// prints, for each, the health verdict a GitOps tool gives it, one line per object:
// `<name> <status> <message>`.
//
//	gitops-health kstatus               kstatus, the library behind Flux's health checks
//	gitops-health argocd SCRIPT.lua     an Argo CD Lua health check, run as Argo CD runs one
//
// The tests use it to prove that KmsAlias status reads the way those tools expect.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// verdict judges one object: a status word and a message.
type verdict func(obj *unstructured.Unstructured) (string, string, error)

func main() {
	judge, err := parseArgs(os.Args[1:])
	if err == nil {
		err = run(os.Stdin, os.Stdout, judge)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health:", err)
		os.Exit(1)
	}
}

func parseArgs(args []string) (verdict, error) {
	switch {
	case len(args) == 1 && args[0] == "kstatus":
		return kstatusVerdict, nil
	case len(args) == 2 && args[0] == "argocd":
		script, err := os.ReadFile(args[1])
		if err != nil {
			return nil, fmt.Errorf("failed to read the health script: %w", err)
		}
		return argocdVerdict(string(script)), nil
	}
	return nil, fmt.Errorf("usage: gitops-health kstatus | gitops-health argocd SCRIPT.lua")
}

func kstatusVerdict(obj *unstructured.Unstructured) (string, string, error) {
	result, err := status.Compute(obj)
	if err != nil {
		return "", "", err
	}
	return string(result.Status), result.Message, nil
}

func run(in io.Reader, out io.Writer, judge verdict) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("failed to read stdin: %w", err)
	}
	doc := &unstructured.Unstructured{}
	if err := doc.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("failed to parse the object: %w", err)
	}
	objects := []unstructured.Unstructured{*doc}
	if doc.IsList() {
		list, err := doc.ToList()
		if err != nil {
			return fmt.Errorf("failed to read the list: %w", err)
		}
		objects = list.Items
	}
	for i := range objects {
		obj := &objects[i]
		word, message, err := judge(obj)
		if err != nil {
			return fmt.Errorf("failed to judge the health of %s: %w", obj.GetName(), err)
		}
		fmt.Fprintf(out, "%s %s %s\n", obj.GetName(), word, message)
	}
	return nil
}

// Command podready stands in for the kubelet in the loopback test cluster.
//
// No kubelet (and no scheduler) runs in the test cluster, so pods would stay Pending forever and
// Deployments would never become available. podready watches every pod in every namespace and
// patches its status the way a kubelet would once all containers are up: phase Running, conditions
// Initialized/ContainersReady/Ready = True and one running, ready container status per container.
// podIP/hostIP are deliberately left unset: nothing may ever connect to a pod.
//
// Pods labelled  flagger-test/unready: "true"  are kept unready instead: phase Running with
// Ready=False / ContainersReady=False (like a failing readiness probe). Adding the label to a ready
// pod makes it unready; removing it makes the pod ready again.
//
// Pods with a deletionTimestamp are deleted with grace period 0 (what the kubelet does once the
// containers have stopped); unscheduled pods are removed by the API server immediately anyway.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

const (
	unreadyLabel = "flagger-test/unready"
	reasonReady  = "FlaggerTestPodReady"
	reasonNot    = "FlaggerTestUnready"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "path to the kubeconfig")
	workers := flag.Int("workers", 4, "number of concurrent pod workers")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "flagger-test-podready"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("client: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	factory := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	podInformer := factory.Core().V1().Pods()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj interface{}) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
	}); err != nil {
		log.Fatalf("event handler: %v", err)
	}
	lister := podInformer.Lister()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		log.Fatalf("pod cache did not sync")
	}
	log.Printf("podready: watching pods in all namespaces (label %s=\"true\" keeps a pod unready)", unreadyLabel)

	for i := 0; i < *workers; i++ {
		go func() {
			for {
				key, shutdown := queue.Get()
				if shutdown {
					return
				}
				if err := syncPod(ctx, cs, lister, key); err != nil {
					log.Printf("pod %s: %v (will retry)", key, err)
					queue.AddRateLimited(key)
				} else {
					queue.Forget(key)
				}
				queue.Done(key)
			}
		}()
	}
	<-ctx.Done()
	queue.ShutDown()
	log.Printf("podready: stopped")
}

func syncPod(ctx context.Context, cs kubernetes.Interface, lister corelisters.PodLister, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone: nothing to do
	}
	if err != nil {
		return err
	}
	pods := cs.CoreV1().Pods(ns)

	if pod.DeletionTimestamp != nil {
		// What the kubelet does once the containers have stopped. The API server still honours
		// finalizers. Unscheduled pods never get here: they are removed at once.
		grace := int64(0)
		uid := pod.UID
		err := pods.Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &grace,
			Preconditions:      &metav1.Preconditions{UID: &uid},
		})
		if err == nil {
			log.Printf("pod %s: deleted (grace 0)", key)
		}
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}

	wantReady := pod.Labels[unreadyLabel] != "true"
	if pod.Status.Phase == corev1.PodRunning &&
		condIs(pod, corev1.PodReady, wantReady) && condIs(pod, corev1.ContainersReady, wantReady) {
		return nil // already as wanted
	}

	patch, err := statusPatch(pod, wantReady, metav1.Now())
	if err != nil {
		return err
	}
	_, err = pods.Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	log.Printf("pod %s: Running, Ready=%v", key, wantReady)
	return nil
}

func condIs(pod *corev1.Pod, t corev1.PodConditionType, want bool) bool {
	wantStatus := corev1.ConditionFalse
	if want {
		wantStatus = corev1.ConditionTrue
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == wantStatus
		}
	}
	return false
}

// statusPatch builds a strategic-merge patch for the pod's status subresource. Conditions merge by
// type; containerStatuses are replaced as a whole.
func statusPatch(pod *corev1.Pod, ready bool, now metav1.Time) ([]byte, error) {
	readyStatus, reason := corev1.ConditionTrue, reasonReady
	if !ready {
		readyStatus, reason = corev1.ConditionFalse, reasonNot
	}
	startTime := now
	if pod.Status.StartTime != nil {
		startTime = *pod.Status.StartTime
	}
	cond := func(t corev1.PodConditionType, s corev1.ConditionStatus, r string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
		if s != corev1.ConditionTrue {
			c.Reason = r
		}
		return c
	}
	statuses := make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		started := true
		statuses = append(statuses, corev1.ContainerStatus{
			Name:         c.Name,
			Image:        c.Image,
			ImageID:      "",
			Ready:        ready,
			Started:      &started,
			RestartCount: 0,
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startTime}},
		})
	}
	body := map[string]interface{}{
		"status": map[string]interface{}{
			"phase":     corev1.PodRunning,
			"startTime": startTime,
			"conditions": []corev1.PodCondition{
				cond(corev1.PodInitialized, corev1.ConditionTrue, ""),
				cond(corev1.ContainersReady, readyStatus, reason),
				cond(corev1.PodReady, readyStatus, reason),
			},
			"containerStatuses": statuses,
		},
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("marshal status patch: %w", err)
	}
	return b, nil
}

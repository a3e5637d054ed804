import sys,collections,re,bisect
W=sys.argv[1]
rows=[]
for line in open(sys.argv[2] if len(sys.argv)>2 else 'all_timehist.txt'):
    m=re.match(r'\s*([\d.]+)\s+\[(\d+)\]\s+(.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$',line)
    if not m: continue
    t,cpu,task,wait,sd,run=m.groups(); rows.append((float(t),int(cpu),task,float(wait),float(sd),float(run)))
win=sorted((t-run/1e3-sd/1e3, t-run/1e3) for (t,c,task,w,sd,run) in rows if f'[{W}/' in task and sd>=0.5)
print("writer runqueue waits >=0.5 ms:",len(win),"totalling %.0f ms"%(sum(b-a for a,b in win)*1e3))
occ=collections.Counter(); tot=collections.Counter()
starts=[a for a,b in win]
PROCS={}
def name_of(task):
    m=re.search(r"\[[-\d]+/(\d+)\]",task)
    if m and m.group(1) in PROCS: return re.sub(r"\[.*","",task)+"@"+PROCS[m.group(1)]
    n=re.sub(r'\[[-\d]+(/\d+)?\]','',task)
    return n
for (t,c,task,w,sd,run) in rows:
    s,e=t-run/1e3,t
    name=name_of(task)
    tot[name]+=run
    i=bisect.bisect_right(starts,e)-1
    while i>=0:
        a,b=win[i]
        if b>s:
            ov=min(b,e)-max(a,s)
            if ov>0: occ[name]+=ov*1e3
        if a < s-0.2: break
        i-=1
print("what ran on the 2 CPUs while the writer waited for one (ms):")
for k,v in occ.most_common(12): print(f"  {v:8.0f}  {k}")
span=rows[-1][0]-rows[0][0]
print(f"CPU time by task over the {span:.1f} s recording (ms; 2 CPUs = {2*span*1e3:.0f}):")
for k,v in tot.most_common(14): print(f"  {v:8.0f}  {k}")
